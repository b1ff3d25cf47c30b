"""Experiment: does unsupervised autoencoder pretraining help when few samples are labelled?

Setup: MNIST-1D with 20,000 training samples whose inputs are all available unlabelled,
of which 1%, 5% or 20% (200, 1,000, 4,000; nested subsets) carry labels; the canonical
MNIST-1D test split (5,000 samples) scores every model. Per seed, one MLP initialization
is shared by three starting points, each then trained on the labelled subset with the same
optimizer and epochs:

* scratch: the initialization as it is;
* layer-wise: :func:`trainwell.transfer.pretrain_layerwise` (denoising, masking noise);
* stacked: :func:`trainwell.transfer.pretrain_stacked` (denoising, masking noise).

All layers are fine-tuned (nothing frozen); the head starts from the same random weights.
Reported: test accuracy mean ± std over seeds per labelled fraction and method.

Command: ``trainwell experiment pretraining [--seeds 5] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

from .. import optim as tw_optim
from ..data import load
from ..data.dataset import Dataset, Split
from ..nn import MLP
from ..train import Trainer
from ..transfer import pretrain_layerwise, pretrain_stacked
from ..transfer.pretrain import Noise
from . import common
from .common import seed_list, torch_threads
from .transfer import markdown_table

__all__ = ["Budget", "DEFAULT_BUDGET", "QUICK_BUDGET", "run"]

NAME = "pretraining"
METHODS = ("scratch", "layer-wise pretrained", "stacked pretrained")


@dataclass(frozen=True)
class Budget:
    """Sizes and training lengths of the experiment (one visible place for them)."""

    num_samples: int = 25_000  # generated; MNIST-1D's 80/20 split leaves 20,000 for training
    fractions: tuple[float, ...] = (0.01, 0.05, 0.2)  # labelled share of the training inputs
    hidden: tuple[int, ...] = (128, 128, 128)  # ReLU MLP
    layerwise_epochs: int = 3  # per block, over all unlabelled inputs
    stacked_epochs: int = 6  # whole autoencoder, over all unlabelled inputs
    noise: Noise = "mask"  # denoising autoencoders: zero inputs with probability noise_level
    noise_level: float = 0.2
    pretrain_lr: float = 1e-3
    steps: int = 1_200  # supervised steps per model (epochs = steps / batches per epoch)
    max_epochs: int = 150  # cap for the smallest subsets
    lr: float = 1e-3  # Adam, supervised training
    batch_size: int = 32


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(
    num_samples=3_000,
    fractions=(0.05, 0.2),
    hidden=(32, 32),
    layerwise_epochs=1,
    stacked_epochs=1,
    steps=40,
    max_epochs=10,
)


def _data(budget: Budget) -> Dataset:
    # val_fraction 0: every training input is unlabelled material; no model selection here.
    return load("mnist1d", num_samples=budget.num_samples, seed=0, val_fraction=0.0)


def _epochs(n: int, budget: Budget) -> int:
    batches = math.ceil(n / budget.batch_size)
    return max(1, min(budget.max_epochs, math.ceil(budget.steps / batches)))


class _PretrainArgs(TypedDict):
    """The keyword arguments both pretraining methods share in :func:`_run_seed`."""

    lr: float
    batch_size: int
    noise: Noise
    noise_level: float
    seed: int


def _run_seed(seed: int, data: Dataset, budget: Budget) -> dict[tuple[float, str], float]:
    init = MLP(
        data.in_features,
        list(budget.hidden),
        data.out_features,  # the number of classes (MNIST-1D is a classification task)
        generator=torch.Generator().manual_seed(seed * 1_000 + 1),
    )
    shared = _PretrainArgs(
        lr=budget.pretrain_lr,
        batch_size=128,
        noise=budget.noise,
        noise_level=budget.noise_level,
        seed=seed,
    )
    starts = {
        "scratch": init,
        "layer-wise pretrained": pretrain_layerwise(
            init, data.train.x, epochs=budget.layerwise_epochs, **shared
        ).model,
        "stacked pretrained": pretrain_stacked(
            init, data.train.x, epochs=budget.stacked_epochs, **shared
        ).model,
    }
    order = torch.randperm(
        len(data.train), generator=torch.Generator().manual_seed(seed * 1_000 + 2)
    )
    empty = Split(data.train.x[:0], data.train.y[:0])
    out = {}
    for frac in budget.fractions:
        pick = order[: round(frac * len(data.train))]  # nested: 1% ⊂ 5% ⊂ 20%
        labelled = Dataset(
            Split(data.train.x[pick], data.train.y[pick]),
            empty,
            data.test,
            data.task,
            data.num_classes,
            data.name,
        )
        for method, start in starts.items():
            model = copy.deepcopy(start)
            opt = tw_optim.build("adam", model.parameters(), lr=budget.lr)
            trainer = Trainer(
                model,
                opt,
                epochs=_epochs(len(pick), budget),
                batch_size=budget.batch_size,
                seed=seed,
                progress=False,
                device="cpu",
            )
            trainer.fit(labelled)
            out[(frac, method)] = trainer.evaluate(data.test)["accuracy"]
    return out


def _rows(per_seed: list[dict], budget: Budget, n_train: int) -> list[dict[str, Any]]:
    rows = []
    for frac in budget.fractions:
        base = [s[(frac, "scratch")] for s in per_seed]
        for method in METHODS:
            accs = [s[(frac, method)] for s in per_seed]
            mean, std = common.mean_std(accs)
            row: dict[str, Any] = {
                "labelled": f"{frac:.0%} ({round(frac * n_train)})",
                "fraction": frac,
                "method": method,
                "seeds": len(accs),
                "accuracy_mean": mean,
                "accuracy_std": std,
            }
            if method != "scratch":
                row["gain"] = row["accuracy_mean"] - statistics.fmean(base)
                row["wins"] = sum(a > b for a, b in zip(accs, base))
            rows.append(row)
    return rows


def _plot(rows: list[dict[str, Any]], budget: Budget, path: Path, title: str) -> None:
    fig, ax = common.pyplot().subplots(figsize=(6.4, 3.8))
    xs = [100 * f for f in budget.fractions]
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        ax.errorbar(
            xs,
            [r["accuracy_mean"] for r in mine],
            yerr=[r["accuracy_std"] for r in mine],
            marker="o",
            capsize=4,
            label=method,
        )
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}%" for x in xs])
    ax.set_xlabel("labelled share of the 20,000 training inputs")
    ax.set_ylabel("test accuracy (10 classes)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def run(
    out_dir: str | Path = "runs/experiments/pretraining",
    seeds: int | Sequence[int] = 5,
    quick: bool = False,
    budget: Budget | None = None,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Run the pretraining experiment; write ``table.md``, ``results.json``, ``accuracy.png``.

    Args:
        out_dir: output folder (created).
        seeds: a count (``0 .. n-1``) or explicit seeds; at least 5 for the reported table.
        quick: a tiny budget for smoke tests (numbers mean nothing).
        budget: override the sizes and epochs (default :data:`DEFAULT_BUDGET`).
        threads: torch intra-op threads while it runs (see
            :func:`trainwell.experiments.transfer.torch_threads`).

    Returns:
        Table rows: ``labelled``, ``fraction``, ``method``, ``accuracy_mean``,
        ``accuracy_std``, and ``gain`` (accuracy points over scratch) / ``wins`` (seeds
        better than scratch) for the pretrained methods.
    """
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    seeds = seed_list(seeds)
    out = Path(out_dir)
    started = time.perf_counter()
    data = _data(budget)
    with torch_threads(threads):
        per_seed = [_run_seed(s, data, budget) for s in seeds]
    rows = _rows(per_seed, budget, len(data.train))
    table = markdown_table(
        rows,
        [
            ("labelled", "labelled"),
            ("method", "method"),
            ("test accuracy (mean ± std)", "{accuracy_mean:.4f} ± {accuracy_std:.4f}"),
            ("gain over scratch", "{gain:+.4f}"),
            ("seeds better than scratch", "{wins}/{seeds}"),
        ],
    )
    setup = (
        f"Unsupervised pretraining: MNIST-1D, {len(data.train):,} unlabelled inputs. "
        f"{len(seeds)} seeds, hidden {list(budget.hidden)} ReLU; pretraining: denoising "
        f"({budget.noise} {budget.noise_level}), layer-wise {budget.layerwise_epochs} "
        f"epochs per layer, stacked {budget.stacked_epochs} epochs; supervised: Adam lr "
        f"{budget.lr}, ~{budget.steps} steps of {budget.batch_size}. Test: "
        f"{len(data.test):,} samples."
    )
    flat = [{f"{frac}/{m}": a for (frac, m), a in s.items()} for s in per_seed]
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
        per_seed=flat,
    )
    _plot(
        rows,
        budget,
        out / "accuracy.png",
        f"MNIST-1D, {len(seeds)} seeds: scratch vs autoencoder pretraining",
    )
    return rows
