"""The training step against its floor: forward + loss + backward, then what each step adds.

Cases, all in one process, each on its own copy of the same model (same initial weights):

- ``floor``: slice a batch, forward, cross-entropy, ``zero_grad(set_to_none=True)``,
  backward. Nothing else: no optimizer, no bookkeeping. This is the physical floor.
- ``plain/<opt>/<convention>``: the floor plus ``opt.step()`` of a trainwell optimizer in a
  plain loop: the optimizer's own cost, separated from the loop's.
- ``trainer/<opt>/<convention>``: the same optimizer inside ``tw.Trainer.fit`` (one epoch
  per round, no validation split): the optimizer plus the Trainer's per-step bookkeeping.
- ``torch/<class>/<fused|foreach>``: torch.optim's own optimizers in the plain loop, for
  reference.
- ``plain/<opt>/<convention>/foreach`` (``--before``): the same with ``foreach=True``,
  the automatic path before torch's fused kernels were used.
- ``floor/compiled`` (``--compile``): the floor loop with ``torch.compile(model)``.

The machine drifts by ±20–30 % within a process, so every round runs every case once
(one epoch of ``--steps`` steps), the order rotating from round to round, and the JSON
reports the median µs per step over rounds and the median of per-round ratios to that
round's floor.

Model: the 8×256 ReLU MLP on MNIST-1D shapes (40 inputs, 10 classes), batch 128,
synthetic tensors. A ResNet case runs when ``trainwell.nn.resnet`` exists (it is being
added on another branch); until then the JSON says it was skipped.

    python benchmarks/floor.py [--threads 2] [--rounds 7] [--steps 50] [--quick]
        [--only adam sgd] [--compile] [--no-trainer] [--no-torch] [--before] [--resnet]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import trainwell as tw
from trainwell.data.dataset import Dataset, Split
from trainwell.optim._foreach import CONVENTIONS
from trainwell.optim.registry import OPTIMIZERS, build

BATCH = 128  # samples per step, as in the issue
IN_FEATURES, CLASSES = 40, 10  # MNIST-1D shapes

# torch.optim reference optimizers: (label, class, kwargs). fused=True exists on CPU for
# SGD, Adam, AdamW and Adagrad in torch 2.13; RMSprop, NAdam, Adamax have foreach only.
TORCH_REFERENCE = [
    ("SGD/fused", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "fused": True}),
    ("SGD/foreach", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "foreach": True}),
    ("Adagrad/fused", torch.optim.Adagrad, {"lr": 1e-2, "fused": True}),
    ("RMSprop/foreach", torch.optim.RMSprop, {"lr": 1e-3, "foreach": True}),
    ("Adam/fused", torch.optim.Adam, {"lr": 1e-3, "fused": True}),
    ("Adam/foreach", torch.optim.Adam, {"lr": 1e-3, "foreach": True}),
    ("AdamW/fused", torch.optim.AdamW, {"lr": 1e-3, "fused": True}),
    ("NAdam/foreach", torch.optim.NAdam, {"lr": 1e-3, "foreach": True}),
    ("Adamax/foreach", torch.optim.Adamax, {"lr": 1e-3, "foreach": True}),
]


def mlp(seed: int = 0) -> nn.Module:
    """The 8×256 ReLU MLP of the issue (He init from ``seed``)."""
    return tw.nn.MLP(in_features=IN_FEATURES, hidden=[256] * 8, out_features=CLASSES,
                     activation="relu", generator=torch.Generator().manual_seed(seed))


def resnet_factory() -> tuple[Callable[[], nn.Module] | None, str]:
    """The ResNet case's model factory, or None and why it is skipped."""
    try:
        module = importlib.import_module("trainwell.nn.resnet")  # optional: another branch adds it
    except ImportError:
        return None, "trainwell.nn.resnet does not exist yet; the ResNet case is skipped"
    build_fn = getattr(module, "resnet", None) or getattr(module, "ResNet", None)
    if build_fn is None:
        return None, "trainwell.nn.resnet has no resnet()/ResNet; the ResNet case is skipped"
    return build_fn, "built with trainwell.nn.resnet defaults"


def synthetic(steps: int, seed: int = 0) -> Dataset:
    """``steps`` batches of MNIST-1D-shaped random data; no validation or test samples."""
    gen = torch.Generator().manual_seed(seed)
    n = steps * BATCH
    x = torch.randn(n, IN_FEATURES, generator=gen)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    empty = Split(x[:0], y[:0])
    return Dataset(Split(x, y), empty, empty, "classification", CLASSES, "synthetic")


class PlainCase:
    """Forward, loss, backward (and ``opt.step()`` when an optimizer is given), per batch."""

    def __init__(self, model: nn.Module, make_opt: Callable | None, data: Dataset) -> None:
        self.model = model
        self.opt = make_opt(model.parameters()) if make_opt is not None else None
        self.x, self.y = data.train.x, data.train.y

    def run(self) -> None:
        """One epoch: every batch once, in order."""
        model, opt, x, y = self.model, self.opt, self.x, self.y
        params = list(model.parameters())
        for start in range(0, len(x), BATCH):
            loss = F.cross_entropy(model(x[start:start + BATCH]), y[start:start + BATCH])
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            else:
                for p in params:
                    p.grad = None
            loss.backward()
            if opt is not None:
                opt.step()


class TrainerCase:
    """The same optimizer inside ``tw.Trainer.fit``: one epoch per run, state carried over."""

    def __init__(self, model: nn.Module, make_opt: Callable, data: Dataset) -> None:
        self.model, self.data = model, data
        self.opt = make_opt(model.parameters())
        self.epoch = 0

    def run(self) -> None:
        """One epoch through the Trainer (shuffle, steps, epoch-end metrics)."""
        trainer = tw.Trainer(self.model, self.opt, epochs=1, batch_size=BATCH, seed=self.epoch,
                             progress=False, device="cpu")
        trainer.fit(self.data)
        self.epoch += 1


def _cases(args: argparse.Namespace, model_fn: Callable[[], nn.Module],
           data: Dataset) -> dict[str, object]:
    base = model_fn()

    def fresh() -> nn.Module:
        return copy.deepcopy(base)  # every case starts from the same weights

    cases: dict[str, object] = {"floor": PlainCase(fresh(), None, data)}
    if args.compile:
        cases["floor/compiled"] = PlainCase(torch.compile(fresh()), None, data)
    for name in args.only or list(OPTIMIZERS):
        for conv in CONVENTIONS:
            def make(params, name=name, conv=conv):
                return build(name, params, convention=conv)
            cases[f"plain/{name}/{conv}"] = PlainCase(fresh(), make, data)
            if not args.no_trainer:
                cases[f"trainer/{name}/{conv}"] = TrainerCase(fresh(), make, data)
            if args.before:
                def make_foreach(params, name=name, conv=conv):
                    return build(name, params, convention=conv, foreach=True)
                cases[f"plain/{name}/{conv}/foreach"] = PlainCase(fresh(), make_foreach, data)
    if not args.no_torch:
        for label, cls, kw in TORCH_REFERENCE:
            cases[f"torch/{label}"] = PlainCase(fresh(), lambda p, c=cls, k=kw: c(p, **k), data)
    return cases


def measure(cases: dict[str, object], rounds: int, steps: int) -> dict[str, dict]:
    """Run every case once per round in a rotating order; medians over rounds."""
    names = list(cases)
    for name in names:  # warm-up: state allocation, first-touch pages, compilation
        cases[name].run()  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = (r * 7) % len(names)  # rotate so no case always follows the same neighbour
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            cases[name].run()  # type: ignore[attr-defined]
            times[name].append((time.perf_counter() - t0) / steps * 1e6)
    floor = times["floor"]
    out = {}
    for name in names:
        ratios = [t / f for t, f in zip(times[name], floor)]
        out[name] = {"us_per_step": round(statistics.median(times[name]), 1),
                     "ratio_to_floor": round(statistics.median(ratios), 3)}
    return out


def main() -> None:
    """Parse arguments, run the cases and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (quick: 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 50)")
    parser.add_argument("--quick", action="store_true", help="adam only, 3 rounds of 20 steps")
    parser.add_argument("--only", nargs="*", default=None, help="trainwell optimizer names")
    parser.add_argument("--compile", action="store_true", help="add the compiled-model floor")
    parser.add_argument("--no-trainer", action="store_true", help="skip the Trainer cases")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.optim references")
    parser.add_argument("--before", action="store_true",
                        help="also run each optimizer with foreach=True (the path before fusing)")
    parser.add_argument("--resnet", action="store_true", help="also run the ResNet case")
    args = parser.parse_args()
    if args.quick and args.only is None:
        args.only = ["adam"]
    rounds = args.rounds or (3 if args.quick else 7)
    steps = args.steps or (20 if args.quick else 50)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # a compile fallback warning must not garble the JSON
    summary: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "steps_per_round": steps,
        "batch": BATCH,
    }
    data = synthetic(steps)
    summary["mlp_8x256"] = measure(_cases(args, mlp, data), rounds, steps)
    if args.resnet:
        factory, note = resnet_factory()
        summary["resnet_note"] = note
        if factory is not None:
            summary["resnet"] = measure(_cases(args, factory, data), rounds, steps)
    else:
        summary["resnet_note"] = "not requested (--resnet)"
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
