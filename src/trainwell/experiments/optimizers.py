"""Experiment: every optimizer on the same MNIST-1D MLP with the same budget.

Questions (the playbook's claims): does Momentum beat plain SGD, do the adaptive methods
(RMSProp, Adam and its family) converge faster, does AdaGrad stall as its accumulated
squared gradients shrink its steps?

Setup: MNIST-1D (10,000 samples: 7,200 train / 800 validation / 2,000 test), an MLP
with 3 hidden layers of 128 ReLU units (He init), batch 128, constant learning rate,
the same number of epochs for every optimizer. Each optimizer runs at its usual default
learning rate (the registry's ``"lecture"`` defaults, stated in the table). Momentum
and Nesterov use the lecture's convention m ← βm + ηg, whose long-run step is
η/(1 − β) = 10η; the control row ``sgd (lr=0.1)`` gives plain SGD that same step, so
"Momentum beats SGD" can be told apart from "Momentum takes a bigger step". AdamW gets
its decoupled weight decay 0.01 (otherwise it is Adam).

Reported per optimizer: final test accuracy, final training loss (eval mode), the
validation accuracy after the first ``early_epochs`` epochs (speed of convergence), mean
± std over seeds; loss and accuracy curves in ``curves.png``.

Command: ``trainwell experiment optimizers [--seeds 3] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..optim import OPTIMIZERS
from . import common

__all__ = [
    "NAME",
    "Budget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "variants",
    "run",
]

NAME = "optimizers"
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Budget:
    """Data size, model and training length (one visible place for them)."""

    num_samples: int = 10_000  # MNIST-1D samples (80/20 train/test, 10% of train held out)
    depth: int = 3  # hidden layers
    width: int = 128  # units per hidden layer
    epochs: int = 15  # same for every optimizer
    batch_size: int = 128
    early_epochs: int = 2  # "converges faster": validation accuracy after this many epochs


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(num_samples=1_000, depth=1, width=16, epochs=2, early_epochs=1)

# Hyperparameters that differ from the registry defaults, and why.
_OVERRIDES: dict[str, dict[str, Any]] = {
    "adamw": {"optim.weight_decay": 0.01},  # AdamW's point is its decoupled decay
}


def variants() -> list[common.Variant]:
    """One row per registered optimizer at its default lr, plus the SGD lr=0.1 control."""
    rows = []
    for name, spec in OPTIMIZERS.items():
        lr = float(spec.defaults["lr"])
        patch = {"optim.name": name, "optim.lr": lr, **_OVERRIDES.get(name, {})}
        settings = [f"lr={lr:g}"]
        for key in ("momentum", "beta", "betas"):
            if key in spec.defaults and not (key == "momentum" and name == "sgd"):
                value = spec.defaults[key]
                settings.append(f"{key}={tuple(value) if key == 'betas' else value}")
        if "optim.weight_decay" in patch:
            settings.append(f"weight_decay={patch['optim.weight_decay']:g}")
        rows.append(common.Variant(name, patch, ", ".join(settings)))
    rows.insert(
        1,
        common.Variant(
            "sgd (lr=0.1)", {"optim.name": "sgd", "optim.lr": 0.1}, "lr=0.1 (= momentum's η/(1−β))"
        ),
    )
    return rows


def base(budget: Budget) -> dict[str, Any]:
    """The config patch shared by every row."""
    return common.mnist1d_mlp(
        NAME,
        budget,
        {
            "model.activation": "relu",
            "schedule.name": "constant",
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
        log: called with one progress line per (optimizer, seed).
        build: turns ``(base, patch)`` into a run ready to fit, e.g. the front's
            :class:`trainwell.cli.experiments.ConfigBuild`.

    Returns:
        One row per optimizer (see :func:`common.run_variants`).
    """
    t0 = time.perf_counter()
    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    seed_values = common.seed_list(seeds)
    rows = common.run_variants(base(budget), variants(), seed_values, build=build, log=log)
    early = min(budget.early_epochs, budget.epochs) - 1
    for row in rows:
        row["metrics"]["early_val_accuracy"] = common.stat(
            [c[early] for c in row["curves"]["val_accuracy"]]
        )
    out = Path(out_dir)
    common.plot_curves(
        out / "curves.png",
        rows,
        [
            ("train_loss", "training loss (running mean per epoch)", True),
            ("val_accuracy", "validation accuracy", False),
        ],
        f"Optimizers on MNIST-1D, MLP {budget.depth}×{budget.width}, mean ± std over "
        f"{len(seed_values)} seeds",
    )
    header = [
        "optimizer",
        "settings",
        "test accuracy",
        "final train loss",
        f"val accuracy after {early + 1} epoch(s)",
        "skipped steps",
    ]
    table_rows = [
        [
            r["name"],
            r["settings"],
            common.pm(r["metrics"]["test_accuracy"]),
            common.pm(r["metrics"]["train_loss"]),
            common.pm(r["metrics"]["early_val_accuracy"]),
            f"{r['metrics']['skipped_steps']['mean']:g}",
        ]
        for r in rows
    ]
    setup = (
        f"MNIST-1D ({budget.num_samples} samples), MLP {budget.depth}×{budget.width} ReLU "
        f"(He init), batch {budget.batch_size}, {budget.epochs} epochs, constant learning "
        "rate, lecture conventions. Mean ± std (n−1) over seeds."
    )
    table = common.markdown_table(header, table_rows)
    common.report(
        out, NAME, table, setup, rows, seeds=seed_values, quick=quick, budget=budget, started=t0
    )
    return rows
