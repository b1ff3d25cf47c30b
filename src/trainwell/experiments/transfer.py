"""Experiment: does reusing layers of a related task help when labels are scarce?

Setup (the textbook's Fashion-MNIST experiment, redone on MNIST-1D over many seeds):

* model A: an MLP trained on MNIST-1D classes 0–7, all their training data;
* task B: classes 8 vs 9 from only ``n_labelled`` (200) labelled training samples,
  evaluated on every class-8/9 test sample;
* B from scratch vs B reusing A's hidden layers with a new 2-unit head, (a) frozen, the
  head alone trained, and (b) frozen for ``freeze_epochs`` then all fine-tuned at
  ``lr · lr_factor`` (:func:`trainwell.transfer.fine_tune`). Every B model trains for the
  same number of epochs with the same optimizer.

Reported: test accuracy mean ± std over seeds, and the error-rate ratio
``mean error(scratch) / mean error(method)`` (> 1: the method makes fewer errors). The
seed varies A's init and shuffling, B's 200-sample draw, and B's init; the data split is
fixed (MNIST-1D's canonical one, seed 0 for the validation hold-out).

Command: ``trainwell experiment transfer [--seeds 10] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

from .. import optim as tw_optim
from ..data import load
from ..data.dataset import Dataset, Split, select_classes
from ..nn import MLP
from ..train import Trainer
from ..transfer import fine_tune, reuse
from . import common
from .common import seed_list, torch_threads

__all__ = [
    "Budget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "run",
    "markdown_table",
    "seed_list",
    "summarize",
    "torch_threads",
]

NAME = "transfer"


@dataclass(frozen=True)
class Budget:
    """Sizes and training lengths of the experiment (one visible place for them)."""

    num_samples: int = 20_000  # MNIST-1D samples generated (80/20 train/test)
    hidden: tuple[int, ...] = (128, 128, 128)  # A's (and B's) hidden widths, ReLU
    epochs_a: int = 15  # model A: passes over ~11.5k samples of classes 0-7
    n_labelled: int = 200  # task B's labelled training samples
    epochs_b: int = 60  # every B model: passes over its 200 samples (7 steps each)
    freeze_epochs: int = 15  # fine-tuned variant: head-only epochs before unfreezing
    lr: float = 1e-3  # Adam, every model and phase
    lr_factor: float = 0.1  # fine-tuning LR = lr · lr_factor
    batch_a: int = 128
    batch_b: int = 32


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(
    num_samples=3_000, hidden=(32, 32), epochs_a=3, n_labelled=60, epochs_b=6, freeze_epochs=2
)


def _trainer(model, data, *, epochs, batch_size, lr, seed, **kw):
    opt = tw_optim.build("adam", model.parameters(), lr=lr)
    trainer = Trainer(
        model,
        opt,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=False,
        device="cpu",
        **kw,
    )
    trainer.fit(data)
    return trainer


def _tasks(budget: Budget) -> tuple[Dataset, Dataset]:
    data = load("mnist1d", num_samples=budget.num_samples, seed=0)
    task_a = select_classes(data, list(range(8)))
    b = select_classes(data, [8, 9])
    empty = Split(b.train.x[:0], b.train.y[:0])  # B has no labelled data to spare for validation
    return task_a, Dataset(b.train, empty, b.test, b.task, b.num_classes, "mnist1d-8v9", b.info)


class _FineTuneArgs(TypedDict):
    """The keyword arguments both :func:`fine_tune` runs share in :func:`_run_seed`."""

    lr: float
    batch_size: int
    seed: int
    device: str  # to the Trainer


def _run_seed(seed: int, task_a: Dataset, task_b: Dataset, budget: Budget) -> dict[str, float]:
    gen = lambda k: torch.Generator().manual_seed(seed * 1_000 + k)  # noqa: E731
    model_a = MLP(task_a.in_features, list(budget.hidden), 8, generator=gen(1))
    acc_a = _trainer(
        model_a, task_a, epochs=budget.epochs_a, batch_size=budget.batch_a, lr=budget.lr, seed=seed
    ).evaluate(task_a.test)["accuracy"]
    pick = torch.randperm(len(task_b.train), generator=gen(2))[: budget.n_labelled]
    small = Dataset(
        Split(task_b.train.x[pick], task_b.train.y[pick]),
        task_b.val,
        task_b.test,
        task_b.task,
        task_b.num_classes,
        task_b.name,
    )
    scratch = MLP(task_b.in_features, list(budget.hidden), 2, generator=gen(3))
    acc = {"model A (classes 0-7)": acc_a}
    acc["scratch"] = _trainer(
        scratch, small, epochs=budget.epochs_b, batch_size=budget.batch_b, lr=budget.lr, seed=seed
    ).evaluate(small.test)["accuracy"]
    shared = _FineTuneArgs(lr=budget.lr, batch_size=budget.batch_b, seed=seed, device="cpu")
    frozen = reuse(model_a, new_head=2, generator=gen(4))
    acc["reuse A, frozen"] = fine_tune(
        frozen, small, freeze_epochs=budget.epochs_b, epochs=0, **shared
    ).test_metrics["accuracy"]
    tuned = reuse(model_a, new_head=2, generator=gen(4))
    acc["reuse A, frozen then fine-tuned"] = fine_tune(
        tuned,
        small,
        freeze_epochs=budget.freeze_epochs,
        epochs=budget.epochs_b - budget.freeze_epochs,
        lr_factor=budget.lr_factor,
        **shared,
    ).test_metrics["accuracy"]
    return acc


def summarize(per_seed: list[dict[str, float]], baseline: str = "scratch") -> list[dict[str, Any]]:
    """Rows of mean ± std accuracy, mean error and the error ratio against ``baseline``.

    Formula: ``error_ratio = mean(1 − acc_baseline) / mean(1 − acc_method)``; ``wins`` counts
    seeds where the method's accuracy beats the baseline's.
    """
    rows = []
    base_err = statistics.fmean(1 - s[baseline] for s in per_seed)
    for method in per_seed[0]:
        accs = [s[method] for s in per_seed]
        err = statistics.fmean(1 - a for a in accs)
        mean, std = common.mean_std(accs)
        row: dict[str, Any] = {
            "method": method,
            "seeds": len(accs),
            "accuracy_mean": mean,
            "accuracy_std": std,
            "error_mean": err,
        }
        if method != baseline and baseline in per_seed[0] and not method.startswith("model A"):
            row["error_ratio"] = base_err / err if err > 0 else float("inf")
            row["wins"] = sum(s[method] > s[baseline] for s in per_seed)
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A GitHub Markdown table of ``rows``; ``columns`` are ``(header, key or format)`` pairs.

    A column spec containing ``{`` is a format string over the row, else a key printed as is.
    """
    lines = [
        "| " + " | ".join(h for h, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = []
        for _, spec in columns:
            try:
                cells.append(spec.format(**row) if "{" in spec else str(row.get(spec, "")))
            except KeyError:
                cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(per_seed: list[dict[str, float]], path: Path, title: str) -> None:
    methods = [m for m in per_seed[0] if not m.startswith("model A")]
    fig, ax = common.pyplot().subplots(figsize=(7, 3.6))
    for i, m in enumerate(methods):
        accs = [s[m] for s in per_seed]
        mean, std = common.mean_std(accs)
        ax.scatter([i] * len(accs), accs, alpha=0.6)
        ax.errorbar(
            i + 0.15,
            mean,
            yerr=std,
            fmt="o",
            color="black",
            capsize=4,
        )
    ax.set_xticks(range(len(methods)), [m.replace(", ", ",\n") for m in methods], fontsize=8)
    ax.set_ylabel("test accuracy (8 vs 9)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    common.save_figure(fig, path)


def run(
    out_dir: str | Path = "runs/experiments/transfer",
    seeds: int | Sequence[int] = 10,
    quick: bool = False,
    budget: Budget | None = None,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Run the transfer experiment; write ``table.md``, ``results.json``, ``accuracy.png``.

    Args:
        out_dir: output folder (created).
        seeds: a count (``0 .. n-1``) or explicit seeds; at least 10 for the reported table.
        quick: a tiny budget for smoke tests (numbers mean nothing).
        budget: override the sizes and epochs (default :data:`DEFAULT_BUDGET`).
        threads: torch intra-op threads while it runs (see :func:`torch_threads`).

    Returns:
        The table rows (dicts with ``method``, ``accuracy_mean``, ``accuracy_std``,
        ``error_mean``, and ``error_ratio``/``wins`` for the transfer variants).
    """
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    seeds = seed_list(seeds)
    out = Path(out_dir)
    started = time.perf_counter()
    task_a, task_b = _tasks(budget)
    with torch_threads(threads):
        per_seed = [_run_seed(s, task_a, task_b, budget) for s in seeds]
    rows = summarize(per_seed)
    table = markdown_table(
        rows,
        [
            ("method", "method"),
            ("test accuracy (mean ± std)", "{accuracy_mean:.4f} ± {accuracy_std:.4f}"),
            ("test error", "{error_mean:.4f}"),
            ("scratch error ÷ error", "{error_ratio:.2f}×"),
            ("seeds better than scratch", "{wins}/{seeds}"),
        ],
    )
    setup = (
        f"Transfer: MNIST-1D 0–7 → 8 vs 9 from {budget.n_labelled} labels. "
        f"{len(seeds)} seeds, hidden {list(budget.hidden)} ReLU, Adam lr {budget.lr}; "
        f"B models {budget.epochs_b} epochs (fine-tuned: {budget.freeze_epochs} frozen, "
        f"then lr × {budget.lr_factor})."
    )
    common.report(
        out,
        NAME,
        table,
        setup,
        rows,
        seeds=seeds,
        quick=quick,
        budget=budget,
        started=started,
        per_seed=per_seed,
    )
    _plot(
        per_seed,
        out / "accuracy.png",
        f"MNIST-1D 8 vs 9 from {budget.n_labelled} labels, {len(seeds)} seeds",
    )
    return rows
