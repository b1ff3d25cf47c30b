"""Engine overhead: tw.Trainer vs a minimal hand-written PyTorch loop, same work.

Both train the same 8×256 ReLU MLP (He init, same seed) on 20,000-sample MNIST-1D with the
same optimizer (torch.optim.Adam, lr 1e-3), batch 128, reshuffled per epoch. Time: the two
alternate in one process over several rounds (the machine is noisy, so we compare medians
of per-round ratios). Peak memory: each variant runs once in a fresh subprocess and reports
its peak resident set size (ru_maxrss), so neither inherits the other's high-water mark.

    python benchmarks/engine.py [--epochs 3] [--rounds 5] [--quick]

Prints one JSON object; the targets are time ratio ≤ 1.05 and memory ratio ≤ 1.10.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

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


def run_plain(data, epochs: int, seed: int) -> float:
    model = plain_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.train.x, data.train.y
    t0 = time.perf_counter()
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(len(x), generator=g)
        xs, ys = x[order], y[order]
        for s in range(0, len(x), 128):
            loss = nn.functional.cross_entropy(model(xs[s:s + 128]), ys[s:s + 128])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def run_trainwell(data, epochs: int, seed: int) -> float:
    model = tw.nn.MLP(in_features=40, hidden=[256] * 8, out_features=10, activation="relu",
                      generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = tw.Trainer(model, opt, epochs=epochs, batch_size=128, seed=seed, progress=False,
                         device="cpu")
    t0 = time.perf_counter()
    trainer.fit(data)
    return time.perf_counter() - t0


def peak_rss_mb(variant: str, epochs: int) -> float:
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, 'benchmarks'); import engine as e; "
            f"import trainwell as tw, resource; d = tw.data.load('mnist1d', num_samples=20000); "
            f"e.run_{variant}(d, {epochs}, 0); "
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 epoch, 3 rounds")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.rounds = 1, 3
    data = tw.data.load("mnist1d", num_samples=20000, seed=0)
    run_plain(data, 1, 0)  # warm-up: first-call costs (allocator, kernels) hit neither side
    run_trainwell(data, 1, 0)
    plain, ours, ratios = [], [], []
    for r in range(args.rounds):
        pair = [("plain", run_plain), ("trainwell", run_trainwell)]
        if r % 2:  # alternate who goes first so drift hits both equally
            pair.reverse()
        times = {name: fn(data, args.epochs, r) for name, fn in pair}
        plain.append(times["plain"])
        ours.append(times["trainwell"])
        ratios.append(times["trainwell"] / times["plain"])
    mem_plain = peak_rss_mb("plain", 1)
    mem_ours = peak_rss_mb("trainwell", 1)
    print(json.dumps({
        "benchmark": "engine",
        "model": "MLP 8x256 relu, Adam lr 1e-3, batch 128, MNIST-1D 20k (14,400 train)",
        "epochs_per_round": args.epochs,
        "rounds": args.rounds,
        "plain_s_median": statistics.median(plain),
        "trainwell_s_median": statistics.median(ours),
        "time_ratio_median": statistics.median(ratios),
        "time_ratios": ratios,
        "peak_rss_mb_plain": mem_plain,
        "peak_rss_mb_trainwell": mem_ours,
        "memory_ratio": mem_ours / mem_plain,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }, indent=2))


if __name__ == "__main__":
    main()
