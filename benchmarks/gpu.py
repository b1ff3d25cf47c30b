"""trainwell on a GPU: the Trainer, the optimizers and the doctor against plain PyTorch.

One script, run unmodified on a machine with a CUDA GPU (under 5 minutes; about one on a
current data-centre GPU), printing one JSON object (device, torch and CUDA versions, date):

- ``mlp``: the 8×256 ReLU MLP (MNIST-1D shapes: 40 inputs, 10 classes; 16,384 generated
  samples, batch 128) — ``tw.Trainer`` vs an equivalent hand-written loop;
- ``resnet``: ``trainwell.nn.resnet`` (widths (32, 64, 128), blocks (1, 1, 1)) on 8,192
  generated 3×32×32 images, batch 256, with device-side augmentation
  (``trainwell.data.augment.Augment``: random crop with 4-pixel padding, flip) — the same
  comparison;
- ``optimizers``: trainwell's Adam (lecture/torch/keras conventions), momentum SGD and Nadam
  vs ``torch.optim`` fused/foreach on a 9.97 M-parameter set (30 × Linear(576, 576)),
  random fixed gradients: µs per ``step()``;
- ``doctor``: the MLP through ``tw.Trainer`` with and without ``DoctorCallback`` (default
  probe period), ratio of wall times.

Both sides of a comparison start from the same weights (one model, deep-copied), use the same
optimizer (``torch.optim.Adam(fused=True)`` by default, ``--optimizer sgd`` for fused momentum
SGD) and the same batches: the hand-written loop visits the epoch's permutation the Trainer
visits (``trainwell.data.loaders.epoch_order``), and both seed the augmentation's generator
from the epoch. Each runs in fp32 and in bf16 (``torch.autocast``). The hand-written loop is
slice → (augment) → forward → cross-entropy → ``zero_grad`` → backward → ``step``; the
Trainer adds what it always does (device-side non-finite guard, BN-buffer protection, loss
and accuracy kept on the device, reduced once per epoch). The machine may be shared and
noisy, so the two sides alternate epoch by epoch (which goes first alternates too) and the
JSON gives the median of the paired per-epoch ratios. ``torch.cuda.synchronize()`` is called
only around timed regions, never inside a training loop.

    python benchmarks/gpu.py [--device auto|cuda|cpu] [--quick] [--rounds N]
        [--only mlp resnet optimizers doctor] [--optimizer adam|sgd] [--threads N]

``--device cpu --quick`` runs tiny sizes on a CPU in well under a minute (the CI smoke test,
``tests/test_benchmarks_smoke.py``). With no CUDA device and ``--device cuda`` or ``auto``
(the default) it says so in one line on stderr, prints ``{"skipped": "no CUDA device"}`` and
exits 0.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import trainwell as tw
from trainwell.data.augment import Augment
from trainwell.data.loaders import epoch_order
from trainwell.doctor import DEFAULT_EVERY, DoctorCallback
from trainwell.nn.resnet import resnet
from trainwell.optim.registry import build
from trainwell.train.callbacks import Callback

# Sizes: the GPU run, and the CPU smoke run (tiny: it checks that everything runs).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 8, "epochs": 2,
        "mlp_samples": 16384, "mlp_batch": 128,
        "resnet_images": 8192, "resnet_batch": 256, "resnet_widths": (32, 64, 128),
        "opt_layers": 30, "opt_width": 576, "opt_steps": 20,
        "doctor_epochs": 3, "doctor_every": DEFAULT_EVERY,
    },
    "quick": {
        "rounds": 3, "epochs": 1,
        "mlp_samples": 512, "mlp_batch": 128,
        "resnet_images": 64, "resnet_batch": 32, "resnet_widths": (8, 16, 32),
        "opt_layers": 4, "opt_width": 64, "opt_steps": 3,
        "doctor_epochs": 1, "doctor_every": 2,
    },
}
SECTIONS = ("mlp", "resnet", "optimizers", "doctor")
PRECISIONS = ("fp32", "bf16")
SEED = 0


def precisions(device: torch.device) -> tuple[str, ...]:
    """fp32, and bf16 where the device computes it (every CPU; CUDA from Ampere on)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return ("fp32",)
    return PRECISIONS


def sync(device: torch.device) -> None:
    """Wait for the device (around timed regions only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()``, the device drained before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def make_optimizer(kind: str, params: Any) -> torch.optim.Optimizer:
    """The optimizer both sides use: fused Adam (lr 1e-3) or fused momentum SGD (lr 0.05)."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, fused=True)


def augment_seed(epoch: int) -> int:
    """The augmentation generator's seed for ``epoch`` (both sides)."""
    return 1_000 + epoch


# -- the data ---------------------------------------------------------------------------
def mlp_data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-1D-shaped generated data (40 features, 10 classes), on ``device``."""
    g = torch.Generator().manual_seed(SEED)
    y = torch.randint(0, 10, (n,), generator=g)
    centres = torch.randn(10, 40, generator=g)
    x = centres[y] + torch.randn(n, 40, generator=g)
    return x.to(device), y.to(device)


def image_data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated 3×32×32 images (a class template plus noise) and labels, on ``device``."""
    g = torch.Generator().manual_seed(SEED)
    y = torch.randint(0, 10, (n,), generator=g)
    templates = torch.randn(10, 3, 32, 32, generator=g)
    x = 0.5 * templates[y] + torch.randn(n, 3, 32, 32, generator=g)
    return x.to(device), y.to(device)


def mlp_model() -> nn.Module:
    """The 8×256 ReLU MLP (He init, seeded)."""
    return tw.nn.MLP(in_features=40, hidden=[256] * 8, out_features=10, activation="relu",
                     generator=torch.Generator().manual_seed(SEED))


# -- the two sides of a comparison ------------------------------------------------------
class PlainLoop:
    """The hand-written loop: permute, slice, (augment), forward, loss, backward, step."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, batch: int, precision: str, device: torch.device,
                 augment: Augment | None) -> None:
        self.model, self.opt, self.x, self.y, self.batch = model, opt, x, y, batch
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.device, self.augment = device, augment
        self.gen = torch.Generator(device=device) if augment is not None else None

    def epoch(self, epoch: int) -> None:
        """One epoch over the permutation the Trainer visits in its epoch ``epoch``."""
        model, opt, aug, gen, b = self.model, self.opt, self.augment, self.gen, self.batch
        model.train()
        order = epoch_order(len(self.x), SEED, epoch).to(self.device)
        xs, ys = self.x[order], self.y[order]
        if gen is not None:
            gen.manual_seed(augment_seed(epoch))
        for s in range(0, len(xs), b):
            xb, yb = xs[s:s + b], ys[s:s + b]
            if aug is not None:
                xb = aug(xb, gen)
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.dtype is not None):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


class _ReseedAugment(Callback):
    """Seeds the augmentation generator at each epoch's start, as the plain loop does."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.gen.manual_seed(augment_seed(epoch))


class TrainerLoop:
    """The same work through one ``tw.Trainer``: ``fit(until=e + 1)`` runs epoch ``e``."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, batch: int, precision: str, device: torch.device,
                 augment: Augment | None, total_epochs: int) -> None:
        self.data = (x, y)
        forward, callbacks = None, []
        if augment is not None:
            gen = torch.Generator(device=device)
            callbacks.append(_ReseedAugment(gen))

            def forward(net: nn.Module, batch: Any) -> torch.Tensor:
                xb = batch[0]
                return net(augment(xb, gen) if net.training else xb)

        self.trainer = tw.Trainer(model, opt, epochs=total_epochs, batch_size=batch, seed=SEED,
                                  precision=precision, forward=forward, callbacks=callbacks,
                                  progress=False, device=device)

    def epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (the Trainer's own counter must agree)."""
        assert self.trainer.epoch == epoch, (self.trainer.epoch, epoch)
        self.trainer.fit(self.data, until=epoch + 1)


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    """Largest |Δ| between the two sides' parameters (same batches → rounding only)."""
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def paired(make_model: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, batch: int,
           precision: str, device: torch.device, augment: Augment | None, rounds: int,
           epochs: int, optimizer: str) -> dict[str, Any]:
    """Warm-up epoch on both sides, then ``rounds × epochs`` interleaved paired epochs."""
    base = make_model().to(device)
    m_plain, m_ours = copy.deepcopy(base), copy.deepcopy(base)
    plain = PlainLoop(m_plain, make_optimizer(optimizer, m_plain.parameters()), x, y, batch,
                      precision, device, augment)
    ours = TrainerLoop(m_ours, make_optimizer(optimizer, m_ours.parameters()), x, y, batch,
                       precision, device, augment, total_epochs=1 + rounds * epochs)
    # Warm-up (epoch 0): allocator, kernels, cuDNN autotuning, optimizer state on both sides.
    t_warm = {"plain": timed(lambda: plain.epoch(0), device),
              "trainwell": timed(lambda: ours.epoch(0), device)}
    diff = max_weight_diff(m_plain, m_ours)
    t_plain, t_ours, ratios = [], [], []
    for r in range(rounds):
        for k in range(epochs):
            e = 1 + r * epochs + k
            sides = [("plain", plain), ("trainwell", ours)]
            if (r + k) % 2:
                sides.reverse()
            t = {name: timed(lambda s=side, e=e: s.epoch(e), device) for name, side in sides}
            t_plain.append(t["plain"])
            t_ours.append(t["trainwell"])
            ratios.append(t["trainwell"] / t["plain"])
    steps = -(-len(x) // batch)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {
        "paired_epochs": len(ratios),
        "steps_per_epoch": steps,
        "plain_epoch_s_median": statistics.median(t_plain),
        "trainwell_epoch_s_median": statistics.median(t_ours),
        "plain_step_us_median": 1e6 * statistics.median(t_plain) / steps,
        "trainwell_step_us_median": 1e6 * statistics.median(t_ours) / steps,
        "ratio_median": statistics.median(ratios),
        "ratio_of_medians": statistics.median(t_ours) / statistics.median(t_plain),
        "ratio_quartiles": [round(q, 4) for q in quartiles],
        "warmup_epoch_s": t_warm,
        "max_abs_weight_diff_after_warmup": diff,
    }


def bench_mlp(cfg: dict, device: torch.device, rounds: int, optimizer: str) -> dict[str, Any]:
    """Section (a): the MLP, Trainer vs plain loop, fp32 and bf16."""
    x, y = mlp_data(cfg["mlp_samples"], device)
    out: dict[str, Any] = {
        "setup": f"MLP 8x256 relu (40 in, 10 out), {len(x)} generated samples, batch "
                 f"{cfg['mlp_batch']}, {optimizer} fused, same weights and batches",
    }
    for precision in precisions(device):
        out[precision] = paired(mlp_model, x, y, cfg["mlp_batch"], precision, device, None,
                                rounds, cfg["epochs"], optimizer)
    return out


def bench_resnet(cfg: dict, device: torch.device, rounds: int,
                 optimizer: str) -> dict[str, Any]:
    """Section (b): the ResNet with device-side augmentation, fp32 and bf16."""
    x, y = image_data(cfg["resnet_images"], device)
    widths = cfg["resnet_widths"]

    def make() -> nn.Module:
        return resnet((3, 32, 32), 10, widths=widths, blocks=(1, 1, 1),
                      generator=torch.Generator().manual_seed(SEED))

    params = sum(p.numel() for p in make().parameters())
    augment = Augment(crop_padding=4, flip=True)
    out: dict[str, Any] = {
        "setup": f"pre-activation ResNet widths {tuple(widths)} blocks (1, 1, 1) ({params:,} "
                 f"parameters), {len(x)} generated 3x32x32 images, batch "
                 f"{cfg['resnet_batch']}, {augment!r} on the device, {optimizer} fused",
    }
    for precision in precisions(device):
        out[precision] = paired(make, x, y, cfg["resnet_batch"], precision, device, augment,
                                rounds, cfg["epochs"], optimizer)
    return out


# -- optimizers ---------------------------------------------------------------------------
def _param_set(layers: int, width: int, device: torch.device) -> list[torch.Tensor]:
    """``layers`` × Linear(width, width): weights and biases, with fixed random gradients."""
    gen = torch.Generator().manual_seed(SEED)
    params = []
    for _ in range(layers):
        w = (torch.randn(width, width, generator=gen) * 0.04).to(device).requires_grad_()
        b = torch.zeros(width, device=device, requires_grad=True)
        params += [w, b]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(device)
    return params


def _contestants(params: list[torch.Tensor]) -> dict[str, tuple[torch.optim.Optimizer, str]]:
    """label → (optimizer over ``params``, label of the torch.optim reference it is held to)."""
    lr = 1e-4
    out: dict[str, tuple[torch.optim.Optimizer, str]] = {
        "torch.optim/Adam/fused": (torch.optim.Adam(params, lr=lr, fused=True), ""),
        "torch.optim/Adam/foreach": (torch.optim.Adam(params, lr=lr, foreach=True), ""),
        "torch.optim/SGD-momentum/fused": (
            torch.optim.SGD(params, lr=lr, momentum=0.9, fused=True), ""),
        "torch.optim/SGD-momentum/foreach": (
            torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=True), ""),
        "torch.optim/NAdam/foreach": (torch.optim.NAdam(params, lr=lr, foreach=True), ""),
    }
    refs = {"adam": "torch.optim/Adam/fused", "momentum": "torch.optim/SGD-momentum/fused",
            "nadam": "torch.optim/NAdam/foreach"}
    for name, ref in refs.items():
        for conv in ("lecture", "torch", "keras"):
            out[f"trainwell/{name}/{conv}"] = (build(name, params, convention=conv, lr=lr), ref)
    return out


def bench_optimizers(cfg: dict, device: torch.device, rounds: int) -> dict[str, Any]:
    """Section (c): µs per ``step()``, every contestant on the same parameters, interleaved."""
    params = _param_set(cfg["opt_layers"], cfg["opt_width"], device)
    contestants = _contestants(params)
    steps = cfg["opt_steps"]
    names = list(contestants)

    def run(name: str, n: int) -> float:
        opt = contestants[name][0]
        return timed(lambda: [opt.step() for _ in range(n)], device) / n * 1e6

    for name in names:  # warm-up: state allocation, first-touch pages, kernel loading
        run(name, 2)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = (r * 5) % len(names)  # rotate so no contestant always follows the same one
        for name in names[k:] + names[:k]:
            times[name].append(run(name, steps))
    us = {n: round(statistics.median(t), 2) for n, t in times.items()}
    ratios = {}
    for name, (_, ref) in contestants.items():
        if ref:
            per_round = [a / b for a, b in zip(times[name], times[ref])]
            ratios[name] = {"vs": ref, "ratio_median": round(statistics.median(per_round), 3)}
    return {
        "setup": f"{cfg['opt_layers']} x Linear({cfg['opt_width']}, {cfg['opt_width']}) = "
                 f"{sum(p.numel() for p in params):,} parameters in {len(params)} tensors, "
                 f"float32, fixed random gradients, lr 1e-4; {rounds} rounds x {steps} steps",
        "us_per_step": us,
        "ratio_to_torch": ratios,
    }


# -- the doctor ---------------------------------------------------------------------------
def bench_doctor(cfg: dict, device: torch.device, rounds: int, optimizer: str) -> dict[str, Any]:
    """Section (d): the MLP through the Trainer with and without ``DoctorCallback``."""
    x, y = mlp_data(cfg["mlp_samples"], device)
    base = mlp_model().to(device)
    epochs, every, batch = cfg["doctor_epochs"], cfg["doctor_every"], cfg["mlp_batch"]
    models = {"off": copy.deepcopy(base), "on": copy.deepcopy(base)}
    opts = {arm: make_optimizer(optimizer, m.parameters()) for arm, m in models.items()}

    def run(arm: str) -> float:
        cbs = [DoctorCallback(every=every, num_classes=10)] if arm == "on" else []
        trainer = tw.Trainer(models[arm], opts[arm], epochs=epochs, batch_size=batch, seed=SEED,
                             callbacks=cbs, progress=False, device=device)
        return timed(lambda: trainer.fit((x, y)), device)

    run("off")  # warm-up
    run("on")
    off, on, ratios = [], [], []
    for r in range(rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        t = {arm: run(arm) for arm in order}
        off.append(t["off"])
        on.append(t["on"])
        ratios.append(t["on"] / t["off"])
    steps = epochs * -(-len(x) // batch)
    return {
        "setup": f"MLP 8x256 relu, {len(x)} generated samples, batch {batch}, {epochs} epochs "
                 f"({steps} steps) per run, probes at steps 0, {every}, {2 * every}, ... of each run, "
                 f"{optimizer} fused, fp32",
        "rounds": rounds,
        "probe_steps_per_run": -(-steps // every),
        "off_s_median": statistics.median(off),
        "on_s_median": statistics.median(on),
        "ratio_median": statistics.median(ratios),
        "ratios": [round(v, 4) for v in ratios],
    }


# -- main -------------------------------------------------------------------------------
def resolve(device: str) -> torch.device | None:
    """The device to run on, or None when CUDA was asked for (or auto) and is absent."""
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        return None
    return torch.device("cuda")


def describe(device: torch.device) -> dict[str, Any]:
    """Where and when this ran."""
    info: dict[str, Any] = {
        "benchmark": "gpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else f"CPU {platform.machine()} {platform.processor() or ''}".strip()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "trainwell": tw.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the sections, print one JSON object; return the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the CPU smoke run)")
    p.add_argument("--rounds", type=int, default=None, help="paired rounds (default 8; quick 3)")
    p.add_argument("--only", nargs="*", choices=SECTIONS, default=None, help="sections to run")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="what both sides of (a), (b), (d) train with (fused)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    device = resolve(args.device)
    if device is None:
        print(f"gpu.py: no CUDA device here (--device {args.device}); nothing measured. "
              "Use --device cpu --quick for the CPU smoke run.", file=sys.stderr)
        print(json.dumps({"skipped": "no CUDA device"}))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # what a conv-net user sets; both sides alike
    warnings.simplefilter("ignore")  # a library warning must not garble the JSON
    cfg = dict(SIZES["quick" if args.quick else "full"])
    rounds = args.rounds or cfg["rounds"]
    out = describe(device)
    out.update({"quick": args.quick, "rounds": rounds, "epochs_per_round": cfg["epochs"],
                "optimizer": args.optimizer})
    t0 = time.perf_counter()
    sections = args.only or list(SECTIONS)
    if "mlp" in sections:
        out["mlp"] = bench_mlp(cfg, device, rounds, args.optimizer)
    if "resnet" in sections:
        out["resnet"] = bench_resnet(cfg, device, rounds, args.optimizer)
    if "optimizers" in sections:
        out["optimizers"] = bench_optimizers(cfg, device, rounds)
    if "doctor" in sections:
        out["doctor"] = bench_doctor(cfg, device, rounds, args.optimizer)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    if device.type == "cuda":
        out["peak_cuda_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
