"""Engine overhead: tw.Trainer vs a minimal hand-written PyTorch loop, same work.

Both train the same 8×256 ReLU MLP (He init, same seed) on 20,000-sample MNIST-1D with the
same optimizer (torch.optim.Adam, lr 1e-3), batch 128, reshuffled per epoch. Four cases:
``mlp`` feeds the in-memory tensors (trainwell's fast path vs permutation + slicing);
``dataloader`` feeds both sides the same ``DataLoader(TensorDataset, batch_size=128,
shuffle=True)``. ``resnet`` trains ``trainwell.nn.resnet`` (widths (16, 32, 64), blocks
(1, 1, 1), 77,850 parameters) on 2,048 generated 3×32×32 images held in memory, batch 128,
torch.optim.SGD (lr 0.05, momentum 0.9), both sides on the same tensors, no validation
split on either side. ``ddp`` runs 2 CPU processes (gloo on loopback, started by
``torch.multiprocessing``), global batch 128 = 64 a rank, tw.Trainer under DDP vs the same job
hand-written with ``DistributedDataParallel`` (the same per-epoch permutation on both ranks,
each slicing its half of every global batch). Both sides do the
same job per epoch: train, keep the training loss and accuracy, and validate (loss and
accuracy on the validation split; the ``resnet`` case has none). Time: the two
alternate epoch by epoch in one process (the machine is noisy, so we compare the median of
paired per-epoch ratios). Peak memory: each variant runs once in a fresh subprocess and reports
its peak resident set size (ru_maxrss), so neither inherits the other's high-water mark.

    python benchmarks/engine.py [--epochs 2] [--rounds 10] [--quick]
                                [--case mlp|dataloader|resnet|ddp|all]

Prints one JSON object; the targets are time ratio ≤ 1.05 and memory ratio ≤ 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

import trainwell as tw


def plain_model(seed: int) -> nn.Module:
    """The same network as tw.nn.MLP, built as a plain nn.Sequential with the same weights."""
    ref = tw.nn.MLP(in_features=40, hidden=[256] * 8, out_features=10, activation="relu",
                    generator=torch.Generator().manual_seed(seed))
    layers: list[nn.Module] = []
    for block in ref.blocks:
        layers += [block.linear, nn.ReLU()]
    layers.append(ref.head)
    return nn.Sequential(*layers)


class PlainLoop:
    """The hand-written baseline: shuffle by permutation, slice, forward, backward, step;
    like any training loop that reports progress, it keeps the epoch's training loss and
    accuracy (on the device, read once) and ends the epoch with a validation pass, which
    is the job ``Trainer.fit`` does per epoch."""

    def __init__(self, data, seed: int) -> None:
        self.model = plain_model(seed)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x, self.y = data.train.x, data.train.y
        self.val = data.val

    def step(self, x: torch.Tensor, y: torch.Tensor, sums: list[torch.Tensor]) -> None:
        """One training step; adds its loss·n and correct count to ``sums``."""
        out = self.model(x)
        loss = nn.functional.cross_entropy(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        sums[0] += loss.detach() * len(y)
        sums[1] += (out.detach().argmax(1) == y).sum()

    def validate(self, sums: list[torch.Tensor], n: int) -> dict:
        """The epoch's metrics: its training sums, then loss and accuracy on validation."""
        metrics = {"train_loss": float(sums[0]) / n, "train_accuracy": int(sums[1]) / n}
        if self.val is None or len(self.val.x) == 0:
            return metrics
        model = self.model
        model.eval()
        loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        with torch.no_grad():
            for s in range(0, len(self.val.x), 4096):
                x, y = self.val.x[s:s + 4096], self.val.y[s:s + 4096]
                out = model(x)
                loss += nn.functional.cross_entropy(out, y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
        model.train()
        metrics.update(val_loss=float(loss) / len(self.val.x),
                       val_accuracy=int(correct) / len(self.val.x))
        return metrics

    def epoch(self, epoch: int) -> float:
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(self.x), generator=g)
        xs, ys = self.x[order], self.y[order]
        sums = [torch.zeros(()), torch.zeros((), dtype=torch.int64)]
        for s in range(0, len(xs), 128):
            self.step(xs[s:s + 128], ys[s:s + 128], sums)
        self.validate(sums, len(xs))
        return time.perf_counter() - t0


class TrainwellLoop:
    """The same work through tw.Trainer (one fit() call per epoch, state carried over)."""

    def __init__(self, data, seed: int) -> None:
        self.data = data
        self.model = tw.nn.MLP(in_features=40, hidden=[256] * 8, out_features=10,
                               activation="relu", generator=torch.Generator().manual_seed(seed))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def epoch(self, epoch: int) -> float:
        trainer = tw.Trainer(self.model, self.opt, epochs=1, batch_size=128, seed=epoch,
                             progress=False, device="cpu")
        t0 = time.perf_counter()
        trainer.fit(self.data)  # includes its per-epoch validation pass and metrics
        return time.perf_counter() - t0


def make_loader(data) -> DataLoader:
    """The DataLoader both sides of the ``dataloader`` case iterate."""
    return DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=128, shuffle=True)


class PlainLoaderLoop(PlainLoop):
    """The hand-written loop over a DataLoader: for x, y in loader: forward, backward, step."""

    def __init__(self, data, seed: int) -> None:
        super().__init__(data, seed)
        self.loader = make_loader(data)

    def epoch(self, epoch: int) -> float:
        t0 = time.perf_counter()
        torch.manual_seed(epoch)
        sums = [torch.zeros(()), torch.zeros((), dtype=torch.int64)]
        for x, y in self.loader:
            self.step(x, y, sums)
        self.validate(sums, len(self.x))
        return time.perf_counter() - t0


class TrainwellLoaderLoop(TrainwellLoop):
    """tw.Trainer fed the same kind of DataLoader (validation on the in-memory val split)."""

    def __init__(self, data, seed: int) -> None:
        super().__init__(data, seed)
        self.loader = make_loader(data)

    def epoch(self, epoch: int) -> float:
        trainer = tw.Trainer(self.model, self.opt, epochs=1, batch_size=128, seed=epoch,
                             progress=False, device="cpu")
        t0 = time.perf_counter()
        trainer.fit(self.loader, val=self.data.val)
        return time.perf_counter() - t0


class PlainDDPLoop(PlainLoop):
    """Hand-written DDP: every rank draws the epoch's permutation, slices its half of each
    global batch of 128, and DDP averages the gradients (equal halves: the global mean)."""

    def __init__(self, data, seed: int) -> None:
        super().__init__(data, seed)
        self.model = DistributedDataParallel(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def epoch(self, epoch: int) -> float:
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(self.x), generator=g)
        xs, ys = self.x[order], self.y[order]
        half = 128 // self.world
        sums = [torch.zeros(()), torch.zeros((), dtype=torch.int64)]
        for s in range(0, len(xs), 128):
            lo = s + self.rank * half
            self.step(xs[lo:lo + half], ys[lo:lo + half], sums)
        self.validate_ddp(sums)
        return time.perf_counter() - t0

    def validate_ddp(self, sums: list[torch.Tensor]) -> None:
        """Each rank validates its share and the sums are all-reduced, as the Trainer does."""
        n_val = len(self.val.x)
        share = slice(self.rank * n_val // self.world, (self.rank + 1) * n_val // self.world)
        model = self.model.module
        model.eval()
        with torch.no_grad():
            out = model(self.val.x[share])
            val_loss = nn.functional.cross_entropy(out, self.val.y[share], reduction="sum")
            val_correct = (out.argmax(1) == self.val.y[share]).sum()
        model.train()
        totals = torch.stack([sums[0], sums[1].double(), val_loss.double(), val_correct.double()])
        dist.all_reduce(totals)
        totals.tolist()


class TrainwellDDPLoop(TrainwellLoop):
    """tw.Trainer under DDP: like the hand-written side, one DDP wrapper for the whole run
    (a fresh one per epoch would pay DDP's first-iteration bucket rebuild every epoch);
    ``fit(until=...)`` trains one more epoch per call."""

    def __init__(self, data, seed: int) -> None:
        super().__init__(data, seed)
        # The Trainer joins the process group the way it does under torchrun (from_env).
        self.trainer = tw.Trainer(self.model, self.opt, epochs=10_000, batch_size=128,
                                  seed=seed, progress=False, device="cpu")

    def epoch(self, epoch: int) -> float:
        t0 = time.perf_counter()
        self.trainer.fit(self.data, until=self.trainer.epoch + 1)
        return time.perf_counter() - t0


CASES = {"mlp": (PlainLoop, TrainwellLoop), "dataloader": (PlainLoaderLoop, TrainwellLoaderLoop),
         "ddp": (PlainDDPLoop, TrainwellDDPLoop)}


def run_plain(data, epochs: int, seed: int) -> float:
    loop = PlainLoop(data, seed)
    return sum(loop.epoch(e) for e in range(epochs))


def run_trainwell(data, epochs: int, seed: int) -> float:
    loop = TrainwellLoop(data, seed)
    return sum(loop.epoch(e) for e in range(epochs))


def peak_rss_mb(variant: str, epochs: int) -> tuple[float, float]:
    """(peak RSS of a fresh process training ``variant``, the part added by training), MB."""
    code = ("import sys, resource; sys.path.insert(0, 'benchmarks'); import engine as e; "
            "import trainwell as tw; d = tw.data.load('mnist1d', num_samples=20000); "
            "base = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize(); "
            f"e.run_{variant}(d, {epochs}, 0); "
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
            "print(peak, peak - base)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, added = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
    return peak / 2**20, added / 2**20


def paired(data, case: str, epochs: int, rounds: int) -> dict:
    """Interleaved epochs of the two sides of ``case``; medians of the paired ratios."""
    plain_cls, tw_cls = CASES[case]
    plain_loop, tw_loop = plain_cls(data, 0), tw_cls(data, 0)
    plain_loop.epoch(0)  # warm-up: first-call costs (allocator, kernels) hit neither side
    tw_loop.epoch(0)
    plain, ours, ratios = [], [], []
    # Epoch-level interleaving: the two sides alternate every epoch, so slow drifts of this
    # shared machine hit both alike; the statistic is the median of paired ratios.
    for r in range(rounds):
        for e in range(epochs):
            order = [("plain", plain_loop), ("trainwell", tw_loop)]
            if (r + e) % 2:
                order.reverse()
            times = {name: loop.epoch(1 + r * epochs + e) for name, loop in order}
            plain.append(times["plain"])
            ours.append(times["trainwell"])
            ratios.append(times["trainwell"] / times["plain"])
    return {
        "paired_epochs": len(ratios),
        "plain_epoch_s_median": statistics.median(plain),
        "trainwell_epoch_s_median": statistics.median(ours),
        "time_ratio_median": statistics.median(ratios),
        "time_ratio_of_medians": statistics.median(ours) / statistics.median(plain),
        "time_ratio_quartiles": statistics.quantiles(ratios, n=4),
    }


class PlainResNetLoop(PlainLoop):
    """Case ``resnet``, hand-written: PlainLoop's epoch over generated images and a ResNet."""

    def __init__(self, data, seed: int) -> None:  # ``data`` unused: images of its own
        self.x, self.y = resnet_images()
        self.val = None  # no validation split on either side
        self.model = resnet_model(seed)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)


class TrainwellResNetLoop(PlainResNetLoop):
    """Case ``resnet`` through tw.Trainer: ``fit((x, y))``, one call per epoch."""

    def epoch(self, epoch: int) -> float:
        trainer = tw.Trainer(self.model, self.opt, epochs=1, batch_size=128, seed=epoch,
                             progress=False, device="cpu")
        t0 = time.perf_counter()
        trainer.fit((self.x, self.y))
        return time.perf_counter() - t0


def resnet_images(n: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated 3×32×32 images (a class template plus noise) and labels; 10 classes."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.5 * torch.randn(10, 3, 32, 32, generator=g)[y] + torch.randn(n, 3, 32, 32, generator=g)
    return x, y


def resnet_model(seed: int) -> nn.Module:
    """The ResNet both sides of case ``resnet`` train (same seed, same weights)."""
    return tw.nn.resnet((3, 32, 32), 10, widths=(16, 32, 64), blocks=(1, 1, 1),
                        generator=torch.Generator().manual_seed(seed))


CASES["resnet"] = (PlainResNetLoop, TrainwellResNetLoop)


def _ddp_worker(rank: int, world: int, port: int, epochs: int, rounds: int, queue) -> None:
    """One rank of the ``ddp`` case; rank 0 puts the paired timings on ``queue``."""
    # What torchrun sets: the Trainer's from_env() finds the group already joined.
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = tw.data.load("mnist1d", num_samples=20000, seed=0)
        result = paired(data, "ddp", epochs, rounds)
        if rank == 0:
            queue.put(result)
    finally:
        dist.destroy_process_group()


def ddp_case(epochs: int, rounds: int, world: int = 2) -> dict:
    """The ``ddp`` case in ``world`` fresh CPU processes (both ranks time the same epochs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(world, port, epochs, rounds, queue), nprocs=world,
                       start_method="spawn")
    return {"processes": world, "threads_per_process": 1, **queue.get()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2, help="epochs per round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="1 epoch, 3 rounds")
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.rounds = 1, 3
    data = tw.data.load("mnist1d", num_samples=20000, seed=0)
    out: dict = {
        "benchmark": "engine",
        "model": "MLP 8x256 relu, Adam lr 1e-3, batch 128, MNIST-1D 20k (14,400 train)",
    }
    for case in CASES if args.case == "all" else [args.case]:
        out[case] = (ddp_case(args.epochs, args.rounds) if case == "ddp"
                     else paired(data, case, args.epochs, args.rounds))
    if not args.no_memory:
        mem_plain = peak_rss_mb("plain", 1)
        mem_ours = peak_rss_mb("trainwell", 1)
        out.update({
            "peak_rss_mb_plain": mem_plain[0],
            "peak_rss_mb_trainwell": mem_ours[0],
            "memory_ratio": mem_ours[0] / mem_plain[0],
            "training_added_rss_mb_plain": mem_plain[1],
            "training_added_rss_mb_trainwell": mem_ours[1],
        })
    out.update({
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    })
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
