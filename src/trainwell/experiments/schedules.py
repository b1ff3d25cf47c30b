"""Experiment: learning-rate schedules at the same epoch budget.

Question: with the same optimizer, model and number of epochs, how do a constant rate,
power, exponential and piecewise-constant decay, performance scheduling (reduce on a
validation plateau) and Smith's 1cycle compare?

Setup: MNIST-1D (10,000 samples), an MLP with 3 hidden layers of 128 ReLU units,
Momentum (lecture convention m ← βm + ηg, β = 0.9) at η0 = 0.01, batch 128, the same
epochs for every schedule. Power, exponential and piecewise step once per epoch (t counts
epochs); performance scheduling halves η after 2 epochs in a row without a lower
validation loss (patience 1; in the default budget the validation loss kept falling,
so it never fired and the row equals constant);
1cycle steps per batch, peaks at 3·η0 (its usual use: a higher peak for a short time)
and cycles the momentum 0.95 → 0.85 → 0.95. Every schedule's formula and arguments are in
the table.

Reported per schedule: final test accuracy, final training loss (eval mode), best
validation accuracy, final learning rate, mean ± std over seeds; learning-rate, loss and
accuracy curves in ``curves.png``.

Command: ``trainwell experiment schedules [--seeds 3] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import common

__all__ = [
    "NAME",
    "Budget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "variants",
    "run",
]

NAME = "schedules"
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Budget:
    """Data size, model, optimizer and training length (one visible place for them)."""

    num_samples: int = 10_000  # MNIST-1D samples (80/20 train/test, 10% of train held out)
    depth: int = 3  # hidden layers
    width: int = 128  # units per hidden layer
    epochs: int = 15  # same for every schedule
    batch_size: int = 128
    lr: float = 0.01  # η0 of Momentum (β = 0.9, so the long-run step is 10·η0)


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(num_samples=1_000, depth=1, width=16, epochs=3)


def variants(budget: Budget) -> list[common.Variant]:
    """The six schedules, their arguments chosen for ``budget.epochs``."""
    lr, e = budget.lr, budget.epochs
    s_power = max(e / 5, 1.0)  # η halves after s epochs, ends near η0/5
    b1, b2 = max(e // 2, 1), max(3 * e // 4, max(e // 2, 1) + 1)
    peak = 3 * lr
    epoch = {"schedule.unit": "epoch"}
    return [
        common.Variant("constant", {"schedule.name": "constant"}, f"η = {lr:g}"),
        common.Variant(
            "power",
            {
                **epoch,
                "schedule.name": "power",
                "schedule.params": {"lr0": lr, "s": s_power, "c": 1.0},
            },
            f"η0/(1 + t/{s_power:g})^1, t in epochs",
        ),
        common.Variant(
            "exponential",
            {
                **epoch,
                "schedule.name": "exponential",
                "schedule.params": {"lr0": lr, "s": float(e)},
            },
            f"η0·0.1^(t/{e}), t in epochs",
        ),
        common.Variant(
            "piecewise",
            {
                **epoch,
                "schedule.name": "piecewise",
                "schedule.params": {"boundaries": [b1, b2], "values": [lr, lr / 10, lr / 100]},
            },
            f"{lr:g} → {lr / 10:g} at epoch {b1} → {lr / 100:g} at epoch {b2}",
        ),
        common.Variant(
            "performance",
            {"schedule.name": "constant", "schedule.plateau": {"factor": 0.5, "patience": 1}},
            "η × 0.5 after 2 epochs in a row without lower val loss (patience 1)",
        ),
        common.Variant(
            "1cycle",
            {"schedule.name": "one_cycle", "schedule.params": {"max_lr": peak}},
            f"{peak / 10:g} → {peak:g} → {peak / 10:g} → {peak / 1e4:g}, per step; "
            "momentum 0.95→0.85→0.95",
        ),
    ]


def base(budget: Budget) -> dict[str, Any]:
    """The config patch shared by every row."""
    return common.mnist1d_mlp(
        NAME,
        budget,
        {
            "model.activation": "relu",
            "optim.name": "momentum",
            "optim.lr": budget.lr,
            "optim.momentum": 0.9,
        },
    )


def run(
    out_dir: str | Path,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
    *,
    build: common.Build,
) -> list[dict[str, Any]]:
    """Run the experiment and write ``table.md``, ``results.json``, ``curves.png``.

    Args:
        out_dir: output folder (created).
        seeds: a count n (seeds 0..n-1) or explicit seeds.
        quick: tiny budget, for smoke tests only.
        log: called with one progress line per (schedule, seed).
        build: turns ``(base, patch)`` into a run ready to fit, e.g. the front's
            :class:`trainwell.cli.experiments.ConfigBuild`.

    Returns:
        One row per schedule (see :func:`common.run_variants`), with ``best_val_accuracy``
        and ``final_lr`` added to its metrics.
    """
    t0 = time.perf_counter()
    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    seed_values = common.seed_list(seeds)
    rows = common.run_variants(
        base(budget), variants(budget), seed_values, build=build, log=log
    )
    for row in rows:
        for key, reduce, curve in (
            ("best_val_accuracy", max, "val_accuracy"),
            ("final_lr", lambda c: c[-1], "lr"),
        ):
            row["metrics"][key] = common.stat([reduce(c) for c in row["curves"][curve]])
    out = Path(out_dir)
    common.plot_curves(
        out / "curves.png",
        rows,
        [
            ("lr", "learning rate (last step of the epoch)", True),
            ("train_loss", "training loss (running mean per epoch)", True),
            ("val_accuracy", "validation accuracy", False),
        ],
        f"Schedules, Momentum η0={budget.lr:g}, MNIST-1D MLP {budget.depth}×{budget.width}, "
        f"mean ± std over {len(seed_values)} seeds",
    )
    header = [
        "schedule",
        "settings",
        "test accuracy",
        "final train loss",
        "best val accuracy",
        "final lr",
    ]
    table_rows = [
        [
            r["name"],
            r["settings"],
            common.pm(r["metrics"]["test_accuracy"]),
            common.pm(r["metrics"]["train_loss"]),
            common.pm(r["metrics"]["best_val_accuracy"]),
            f"{r['metrics']['final_lr']['mean']:.2g}",
        ]
        for r in rows
    ]
    setup = (
        f"MNIST-1D ({budget.num_samples} samples), MLP {budget.depth}×{budget.width} ReLU, "
        f"Momentum (β=0.9, lecture convention) η0={budget.lr:g}, batch {budget.batch_size}, "
        f"{budget.epochs} epochs for every schedule. Mean ± std (n−1) over seeds."
    )
    table = common.markdown_table(header, table_rows)
    common.report(
        out, NAME, table, setup, rows, seeds=seed_values, quick=quick, budget=budget, started=t0
    )
    return rows
