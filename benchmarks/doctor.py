"""Overhead of the doctor's probes: the same healthy run with and without them.

Runs a healthy config (MNIST-1D, 8×256 ReLU MLP, Adam) A/B interleaved for several rounds
(A = plain, B = with :class:`trainwell.doctor.DoctorCallback` at the default sampling,
writing health.jsonl), and prints one JSON object with the median wall times and the
median of the per-round ratios B/A. Target: ratio ≤ 1.03.

Usage: python benchmarks/doctor.py [--rounds 5] [--epochs 3] [--samples 20000] [--every N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainwell.cli.runner import build_data, build_run
from trainwell.config import validate
from trainwell.doctor import DEFAULT_EVERY, DoctorCallback


def _config(epochs: int, samples: int):
    return validate(
        {
            "name": "bench-doctor",
            "seed": 0,
            "device": "cpu",
            "data": {"source": "mnist1d", "num_samples": samples},
            "model": {"depth": 8, "width": 256, "activation": "relu"},
            "optim": {"name": "adam", "lr": 3e-3},
            "train": {"epochs": epochs, "batch_size": 128, "checkpoint_every": 1000},
        }
    )


def _time(config, data, callbacks, run_dir: Path) -> float:
    built = build_run(config, callbacks=callbacks, run_dir=run_dir, data=data)
    t0 = time.perf_counter()
    built.trainer.fit(built.data)
    return time.perf_counter() - t0


def main() -> None:
    """Run the interleaved benchmark and print the JSON result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--every", type=int, default=DEFAULT_EVERY)
    args = p.parse_args()
    config = _config(args.epochs, args.samples)
    data = build_data(config)
    plain, probed, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        _time(config, data, [], Path(tmp) / "warmup")  # first run pays one-off costs
        for r in range(args.rounds):
            # Alternate which arm goes first so drift in machine load cancels out.
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            t = {}
            for arm in order:
                cbs = (
                    [DoctorCallback(every=args.every, num_classes=data.num_classes)]
                    if arm == "b"
                    else []
                )
                t[arm] = _time(config, data, cbs, Path(tmp) / f"{arm}{r}")
            plain.append(t["a"])
            probed.append(t["b"])
            ratios.append(t["b"] / t["a"])
    print(
        json.dumps(
            {
                "benchmark": "doctor_overhead",
                "config": f"mnist1d-{args.samples} 8x256 relu adam",
                "epochs": args.epochs,
                "every": args.every,
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "plain_s_median": round(statistics.median(plain), 4),
                "probed_s_median": round(statistics.median(probed), 4),
                "ratio_median": round(statistics.median(ratios), 4),
                "ratios": [round(x, 4) for x in ratios],
            }
        )
    )


if __name__ == "__main__":
    main()
