"""Step time of each trainwell optimizer vs its ``torch.optim`` counterpart (foreach=True).

Model: 30 Linear(576, 576) layers = 60 tensors, 9.97 M parameters, float32, random
gradients. For every optimizer, three contestants step the same parameters: torch.optim
(``foreach=True``), trainwell ``convention="torch"`` and trainwell ``"lecture"``. Rounds
interleave the contestants step by step (A/B/C, B/C/A, ...) because the machine's speed drifts by
±20–30% within a process; each round times ``--steps`` calls of ``step()`` per contestant. Prints JSON:
median over rounds of (trainwell time / torch time) per optimizer and convention.

Usage: ``python benchmarks/optimizers.py [--quick] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from trainwell.optim.registry import build

# trainwell name -> (torch class, torch kwargs, trainwell kwargs)
PAIRS = {
    "sgd": (torch.optim.SGD, {"lr": 1e-4}, {}),
    "momentum": (torch.optim.SGD, {"lr": 1e-4, "momentum": 0.9}, {}),
    "nesterov": (torch.optim.SGD, {"lr": 1e-4, "momentum": 0.9, "nesterov": True}, {}),
    "adagrad": (torch.optim.Adagrad, {"lr": 1e-4}, {}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-4}, {}),
    "adam": (torch.optim.Adam, {"lr": 1e-4}, {}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-4}, {}),
    "nadam": (torch.optim.NAdam, {"lr": 1e-4}, {}),
    "adamax": (torch.optim.Adamax, {"lr": 1e-4}, {}),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _model_params(device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(30):  # 30 × (576·576 + 576) = 9,970,560 parameters in 60 tensors
        w = (torch.randn(576, 576, generator=gen) * 0.04).to(device).requires_grad_()
        b = torch.zeros(576, device=device, requires_grad=True)
        params += [w, b]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(device)
    return params


def _time(opt: torch.optim.Optimizer, steps: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Run the benchmark and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 steps (~1 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=None, help="optimizer names to run")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    steps = args.steps or (3 if args.quick else 5)
    params = _model_params(args.device)
    results: dict[str, dict] = {}
    for name in args.only or PAIRS:
        cls, torch_kw, tw_kw = PAIRS[name]
        shared = {k: v for k, v in torch_kw.items() if k != "nesterov"}  # a class of its own
        contestants = {
            "torch.optim": cls(params, foreach=True, **torch_kw),
            "torch": build(name, params, convention="torch", foreach=True, **shared, **tw_kw),
            "lecture": build(name, params, foreach=True, lr=torch_kw["lr"], **tw_kw),
        }
        for opt in contestants.values():  # warm-up: state allocation, first-touch pages
            _time(opt, 1, args.device)
        times: dict[str, list[float]] = {k: [] for k in contestants}
        order = list(contestants)
        for r in range(rounds):
            spent = dict.fromkeys(order, 0.0)
            for s in range(steps):  # interleave single steps: drift hits all three alike
                k = (r + s) % 3
                for key in order[k:] + order[:k]:
                    spent[key] += _time(contestants[key], 1, args.device)
            for key in order:
                times[key].append(spent[key] / steps)
        ratios = {}
        for key in ("torch", "lecture"):
            per_round = [a / b for a, b in zip(times[key], times["torch.optim"])]
            ratios[f"ratio_{key}"] = round(statistics.median(per_round), 3)
        ratios["torch_ms"] = round(1e3 * statistics.median(times["torch.optim"]), 2)
        results[name] = ratios
        del contestants
    summary = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in params),
        "tensors": len(params),
        "rounds": rounds,
        "steps_per_round": steps,
        "median_ratio": results,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
