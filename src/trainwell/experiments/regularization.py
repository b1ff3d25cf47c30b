"""Experiment: regularization on a small training set that overfits.

Question: how much of the train/test gap do an L2 penalty, dropout and a max-norm
constraint close, and at what cost in training fit?

Setup: MNIST-1D generated with 4,000 samples (80/20 train/test), of whose 3,200
training samples 80% are held out for validation, leaving 640 to train on; the 800 test
samples score every row. A wide MLP (2 hidden layers of 256 ReLU units, He init) trained
with Adam (η = 0.001), batch 64, for enough epochs to fit the 640 samples almost
perfectly without regularization. Rows: no regularization; L2 penalty λ·Σw² on weights
(not biases) added to the loss; dropout after each hidden layer; max-norm (each unit's
incoming weight vector rescaled to norm ≤ r after every step). Strengths are in the
table.

Reported per row: train accuracy and test accuracy (both after training, eval mode),
their gap, the test loss, mean ± std over seeds; curves in ``curves.png`` and the
train-vs-test bars in ``gap.png``.

Command: ``trainwell experiment regularization [--seeds 3] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import common

__all__ = [
    "NAME",
    "Budget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "variants",
    "run",
    "plot_gap",
]

NAME = "regularization"
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Budget:
    """Data size, model, strengths and training length (one visible place for them)."""

    num_samples: int = 4_000  # MNIST-1D samples generated (80/20 train/test)
    val_fraction: float = 0.8  # of the 3,200 training samples: 640 left to train on
    depth: int = 2  # hidden layers
    width: int = 256  # units per hidden layer
    epochs: int = 60  # 10 steps per epoch at batch 64
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    # Strengths: the middle of a one-seed sweep (λ 1e-4/1e-3, rate 0.3/0.5, r 0.5/1/2),
    # not the best test score of it.
    l2: float = 1e-3  # λ of λ·Σw²
    dropout: float = 0.5  # rate after each hidden layer
    max_norm: float = 1.0  # r: max L2 norm of each unit's incoming weights (He init: ≈ √2)


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(num_samples=1_000, val_fraction=0.5, depth=1, width=16, epochs=2)


def variants(budget: Budget) -> list[common.Variant]:
    """None, L2, dropout and max-norm at the budget's strengths."""
    return [
        common.Variant("none", {}, "-"),
        common.Variant("l2", {"regularization.l2": budget.l2}, f"λ = {budget.l2:g}"),
        common.Variant("dropout", {"model.dropout": budget.dropout}, f"rate = {budget.dropout:g}"),
        common.Variant(
            "max_norm", {"regularization.max_norm": budget.max_norm}, f"r = {budget.max_norm:g}"
        ),
    ]


def base(budget: Budget) -> dict[str, Any]:
    """The config patch shared by every row."""
    return common.mnist1d_mlp(
        NAME,
        budget,
        {
            "data.val_fraction": budget.val_fraction,
            "model.activation": "relu",
            "optim.name": "adam",
            "optim.lr": budget.lr,
            "schedule.name": "constant",
        },
    )


def plot_gap(path: Path, rows: Sequence[dict[str, Any]], title: str) -> Path:
    """Grouped bars: train and test accuracy per row, mean with ±1 std error bars."""
    x = np.arange(len(rows))
    fig, ax = common.pyplot().subplots(figsize=(6.5, 4.2))
    for offset, split in ((-0.2, "train"), (0.2, "test")):
        m = [r["metrics"][f"{split}_accuracy"] for r in rows]
        ax.bar(
            x + offset,
            [v["mean"] for v in m],
            0.4,
            yerr=[v["std"] for v in m],
            label=split,
            capsize=3,
        )
    ax.set_xticks(x, [r["name"] for r in rows])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return common.save_figure(fig, path)


def run(
    out_dir: str | Path,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
    *,
    build: common.Build,
) -> list[dict[str, Any]]:
    """Run the experiment and write ``table.md``, ``results.json``, ``curves.png``, ``gap.png``.

    Args:
        out_dir: output folder (created).
        seeds: a count n (seeds 0..n-1) or explicit seeds.
        quick: tiny budget, for smoke tests only.
        log: called with one progress line per (row, seed).
        build: turns ``(base, patch)`` into a run ready to fit, e.g. the front's
            :class:`trainwell.cli.experiments.ConfigBuild`.

    Returns:
        One row per regularizer (see :func:`common.run_variants`), with ``gap`` (train
        accuracy − test accuracy, per seed) added to its metrics.
    """
    t0 = time.perf_counter()
    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    seed_values = common.seed_list(seeds)
    rows = common.run_variants(
        base(budget), variants(budget), seed_values, build=build, log=log
    )
    for row in rows:
        m = row["metrics"]
        values = [
            a - b for a, b in zip(m["train_accuracy"]["values"], m["test_accuracy"]["values"])
        ]
        m["gap"] = common.stat(values)
    out = Path(out_dir)
    title = (
        f"Regularization, MNIST-1D MLP {budget.depth}×{budget.width}, small training set, "
        f"mean ± std over {len(seed_values)} seeds"
    )
    common.plot_curves(
        out / "curves.png",
        rows,
        [
            ("train_loss", "training loss (running mean per epoch)", True),
            ("val_loss", "validation loss", True),
            ("val_accuracy", "validation accuracy", False),
        ],
        title,
    )
    plot_gap(out / "gap.png", rows, title)
    header = [
        "regularization",
        "settings",
        "train accuracy",
        "test accuracy",
        "gap (train − test)",
        "test loss",
    ]
    table_rows = [
        [
            r["name"],
            r["settings"],
            common.pm(r["metrics"]["train_accuracy"]),
            common.pm(r["metrics"]["test_accuracy"]),
            common.pm(r["metrics"]["gap"]),
            common.pm(r["metrics"]["test_loss"]),
        ]
        for r in rows
    ]
    setup = (
        f"MNIST-1D ({budget.num_samples} samples, validation fraction {budget.val_fraction:g} "
        "of the training split, so a small training set), MLP "
        f"{budget.depth}×{budget.width} ReLU, Adam η={budget.lr:g}, batch {budget.batch_size}, "
        f"{budget.epochs} epochs. Accuracies after training in eval mode. "
        "Mean ± std (n−1) over seeds."
    )
    table = common.markdown_table(header, table_rows)
    common.report(
        out, NAME, table, setup, rows, seeds=seed_values, quick=quick, budget=budget, started=t0
    )
    return rows
