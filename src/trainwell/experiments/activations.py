"""Experiment: nonsaturating activations in a deep MLP, and how many units die.

Question: in a 20-layer MLP, do LeakyReLU, ELU and SELU train better than ReLU, and how
many ReLU units are dead?

Setup: MNIST-1D (10,000 samples), an MLP with 20 hidden layers of 64 units, each
activation with its matching init under ``init="auto"`` (He for ReLU, LeakyReLU and
ELU; LeCun for SELU), Adam (η = 0.001), batch 128, the same epochs for every row.

Dead units are measured with forward hooks on every hidden activation over a fixed batch
of training samples in eval mode: a unit counts as dead when its output is ≤ 0 for every
sample of the batch (for ReLU: exactly 0, so neither it nor the weights into it get a
gradient from that batch). For LeakyReLU, ELU and SELU the same test counts units stuck
on the negative side, which still pass a (small) gradient; the table says so. Measured
at initialization and after training.

Reported per activation: test accuracy, final training loss (eval mode), the share of
hidden units ≤ 0 on every sample at init and after training, mean ± std over seeds;
``curves.png`` (loss, accuracy) and ``dead_units.png`` (share per layer after training).

Command: ``trainwell experiment activations [--seeds 3] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import common

__all__ = [
    "NAME",
    "Budget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "ACTIVATION_ROWS",
    "dead_units",
    "run",
]

NAME = "activations"
DEFAULT_SEEDS = 3
ACTIVATION_ROWS = ("relu", "leaky_relu", "elu", "selu")


@dataclass(frozen=True)
class Budget:
    """Data size, model and training length (one visible place for them)."""

    num_samples: int = 10_000  # MNIST-1D samples (80/20 train/test, 10% of train held out)
    depth: int = 20  # hidden layers: deep enough for activations to matter
    width: int = 64  # units per hidden layer
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    probe_samples: int = 1024  # training samples in the dead-unit batch


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(num_samples=1_000, depth=3, width=8, epochs=1, probe_samples=128)


def dead_units(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """Share of units ≤ 0 on every sample of ``x``, per hidden activation of ``model``.

    Contract: forward hooks on each ``block.act`` of a :class:`trainwell.nn.MLP` record
    its output a (batch, units) in eval mode under ``no_grad``; layer share =
    mean over units of 1[max over samples of a ≤ 0]. The model's mode is restored.

    Args:
        model: an MLP with ``blocks[i].act`` (see :mod:`trainwell.nn.builders`).
        x: a batch of inputs, on the model's device.

    Returns:
        One share in [0, 1] per hidden layer, first to last.
    """
    outputs: list[torch.Tensor] = []
    blocks = model.get_submodule("blocks")
    assert isinstance(blocks, torch.nn.ModuleList | torch.nn.Sequential), "an MLP's blocks"
    handles = [
        block.get_submodule("act").register_forward_hook(lambda _m, _i, out: outputs.append(out))
        for block in blocks
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [float((a.flatten(1).amax(dim=0) <= 0).double().mean()) for a in outputs]


def _probe(budget: Budget) -> Callable[[Any], dict[str, Any]]:
    def measure(built: Any) -> dict[str, Any]:
        x = built.data.train.x[: budget.probe_samples].to(built.trainer.device)
        per_layer = dead_units(built.model, x)
        return {"dead_fraction": sum(per_layer) / len(per_layer), "dead_per_layer": per_layer}

    return measure


def base(budget: Budget) -> dict[str, Any]:
    """The config patch shared by every row."""
    return common.mnist1d_mlp(
        NAME,
        budget,
        {
            "model.init": "auto",
            "optim.name": "adam",
            "optim.lr": budget.lr,
            "schedule.name": "constant",
        },
    )


def _plot_dead(path: Path, rows: Sequence[dict[str, Any]], title: str) -> Path:
    fig, ax = common.pyplot().subplots(figsize=(6.5, 4.2))
    for row in rows:
        per_seed = np.asarray([f["dead_per_layer"] for f in row["extra"]["final"]], dtype=float)
        layers = np.arange(1, per_seed.shape[1] + 1)
        ax.plot(layers, per_seed.mean(axis=0), marker="o", ms=3, label=row["name"])
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("share of units ≤ 0 on every sample")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
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
    """Run the experiment and write ``table.md``, ``results.json`` and two PNGs.

    Args:
        out_dir: output folder (created).
        seeds: a count n (seeds 0..n-1) or explicit seeds.
        quick: tiny budget, for smoke tests only.
        log: called with one progress line per (activation, seed).
        build: turns ``(base, patch)`` into a run ready to fit, e.g. the front's
            :class:`trainwell.cli.experiments.ConfigBuild`.

    Returns:
        One row per activation (see :func:`common.run_variants`); ``init_dead_fraction``
        and ``final_dead_fraction`` are among its metrics, per-layer shares in ``extra``.
    """
    t0 = time.perf_counter()
    budget = QUICK_BUDGET if quick else DEFAULT_BUDGET
    seed_values = common.seed_list(seeds)
    variants = [
        common.Variant(name, {"model.activation": name}, "α = 0.01" if name == "leaky_relu" else "")
        for name in ACTIVATION_ROWS
    ]
    probe = _probe(budget)
    rows = common.run_variants(
        base(budget),
        variants,
        seed_values,
        build=build,
        measure_init=probe,
        measure_final=probe,
        log=log,
    )
    out = Path(out_dir)
    title = (
        f"Activations, MNIST-1D MLP {budget.depth}×{budget.width}, Adam, "
        f"mean over {len(seed_values)} seeds"
    )
    common.plot_curves(
        out / "curves.png",
        rows,
        [
            ("train_loss", "training loss (running mean per epoch)", True),
            ("val_accuracy", "validation accuracy", False),
        ],
        title,
    )
    _plot_dead(out / "dead_units.png", rows, title)
    header = [
        "activation",
        "init (auto)",
        "test accuracy",
        "final train loss",
        "units ≤ 0 on all samples, init",
        "after training",
    ]
    inits = {"relu": "he", "leaky_relu": "he", "elu": "he", "selu": "lecun"}
    table_rows = [
        [
            r["name"] + (f" ({r['settings']})" if r["settings"] else ""),
            inits[r["name"]],
            common.pm(r["metrics"]["test_accuracy"]),
            common.pm(r["metrics"]["train_loss"]),
            common.pm(r["metrics"]["init_dead_fraction"]),
            common.pm(r["metrics"]["final_dead_fraction"]),
        ]
        for r in rows
    ]
    setup = (
        f"MNIST-1D ({budget.num_samples} samples), MLP {budget.depth}×{budget.width}, "
        f"init auto, Adam η={budget.lr:g}, batch {budget.batch_size}, {budget.epochs} epochs. "
        f"Dead share: units whose output is ≤ 0 on all {budget.probe_samples} probe samples "
        "(eval mode), averaged over the hidden layers; only for ReLU does this mean no "
        "gradient at all. Mean ± std (n−1) over seeds."
    )
    table = common.markdown_table(header, table_rows)
    common.report(
        out, NAME, table, setup, rows, seeds=seed_values, quick=quick, budget=budget, started=t0
    )
    return rows
