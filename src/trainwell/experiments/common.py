"""Shared parts of the playbook experiments: run variants over seeds, tabulate, plot.

An experiment is a base patch plus named :class:`Variant` patches (dotted keys such as
``"optim.name"``, kept as plain data here). A :data:`Build` callable supplied by the caller
(the front's :class:`trainwell.cli.experiments.ConfigBuild`) turns ``(base, patch)`` into a
run ready to fit; this layer never reads a config itself. Each variant is trained once per
seed; the builder shares the data of a (data section, seed) pair between variants, so
variants differ only in what their patch changes. Results are reduced to mean ± sample
standard deviation (n − 1) over seeds and written under ``runs/experiments/NAME/``::

    table.md       the Markdown table (with the setup and the wall time)
    results.json   every row: settings, per-seed values, mean and std, per-epoch curves
    *.png          plots (matplotlib, Agg backend)
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import UserError
from ..train import Trainer
from ..train.checkpoint import atomic_write_text
from .plots import plot_curves, pyplot, save_figure  # re-exported: experiments use common.*

__all__ = [
    "Build",
    "Built",
    "Variant",
    "seed_list",
    "fit_one",
    "run_variants",
    "mean_std",
    "stat",
    "pm",
    "mnist1d_mlp",
    "torch_threads",
    "markdown_table",
    "plot_curves",
    "pyplot",
    "save_figure",
    "write_outputs",
    "report",
    "CURVE_KEYS",
]

# Per-epoch history keys kept as curves in results.json and the plots.
CURVE_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


@dataclass(frozen=True)
class Variant:
    """One row of an experiment: a name, a config patch and the settings shown in the table.

    Args:
        name: row name (e.g. ``"adam"``).
        patch: dotted config keys → values, applied on top of the experiment's base config.
        settings: human-readable hyperparameters for the table, e.g. ``"lr=0.001"``.
    """

    name: str
    patch: dict[str, Any] = field(default_factory=dict)
    settings: str = ""


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count ``n`` means seeds ``0 .. n-1``.

    Raises:
        UserError: ``"--seeds: need at least 1 seed, got 0"``.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise UserError(f"--seeds: need at least 1 seed, got {seeds}; use --seeds 3")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise UserError("--seeds: need at least 1 seed; use --seeds 3")
    return out


class Built(Protocol):
    """A run ready to fit, as a :data:`Build` callable returns it (the runner's ``Run``)."""

    data: Any  # a trainwell.data.Dataset
    model: torch.nn.Module
    trainer: Trainer


Build = Callable[[Mapping[str, Any], Mapping[str, Any]], Built]
"""``build(base, patch) -> Built``: the experiment's base patch, then a variant's patch
(with its ``"seed"``), applied in that order; data may be shared between calls."""

Measure = Callable[[Any], dict[str, Any]]


def fit_one(
    built: Built,
    seed: int,
    *,
    measure_init: Measure | None = None,
    measure_final: Measure | None = None,
) -> dict[str, Any]:
    """Fit a built run once (no run folder); return its final metrics and curves.

    Args:
        built: a run ready to fit (its seed seeds data split, init, shuffling, dropout).
        seed: that seed, recorded in the result.
        measure_init: called with ``built`` before fitting; its dict is stored under
            ``"init"``.
        measure_final: called with the fitted run; its dict is stored under ``"final"``.

    Returns:
        ``{"seed", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
        "test_accuracy", "steps", "skipped_steps", "fit_time_s", "curves", "init", "final"}``
        where the split metrics are evaluated after training in eval mode (no dropout) and
        ``curves`` maps each of :data:`CURVE_KEYS` to its per-epoch list.
    """
    init = measure_init(built) if measure_init is not None else {}
    t0 = time.perf_counter()
    history = built.trainer.fit(built.data)
    fit_s = time.perf_counter() - t0
    out: dict[str, Any] = {"seed": seed}
    for split in ("train", "val", "test"):
        for key, value in built.trainer.evaluate(getattr(built.data, split)).items():
            out[f"{split}_{key}"] = value
    out["steps"] = built.trainer.step
    out["skipped_steps"] = built.trainer.skipped_steps
    out["fit_time_s"] = fit_s
    out["curves"] = {k: [h.get(k, math.nan) for h in history] for k in CURVE_KEYS}
    out["init"] = init
    out["final"] = measure_final(built) if measure_final is not None else {}
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for a single value) of ``values``."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def stat(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}``: :func:`mean_std` of ``values``, and the values kept."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def pm(stat: dict[str, Any], digits: int = 3, scale: float = 1.0) -> str:
    """Format ``{"mean", "std"}`` as ``"0.812 ± 0.010"`` (values multiplied by ``scale``)."""
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def _getter(*keys: str) -> Callable[[dict[str, Any]], Any]:
    """``r -> r[keys[0]][keys[1]]…``: one value of a run's nested result dict."""

    def get(run: dict[str, Any]) -> Any:
        value: Any = run
        for key in keys:
            value = value[key]
        return value

    return get


def _aggregate(variant: Variant, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Reduce per-seed results to a row: mean/std of every scalar, curves kept per seed."""
    getters: dict[str, Callable[[dict[str, Any]], Any]] = {
        k: _getter(k) for k, v in runs[0].items() if isinstance(v, int | float) and k != "seed"
    }
    for group in ("init", "final"):
        for k, v in runs[0][group].items():
            if isinstance(v, int | float):
                getters[f"{group}_{k}"] = _getter(group, k)
    metrics = {key: stat([get(r) for r in runs]) for key, get in getters.items()}
    return {
        "name": variant.name,
        "settings": variant.settings,
        "patch": variant.patch,
        "seeds": [r["seed"] for r in runs],
        "metrics": metrics,
        "curves": {k: [r["curves"][k] for r in runs] for k in CURVE_KEYS},
        "extra": {"init": [r["init"] for r in runs], "final": [r["final"] for r in runs]},
    }


def mnist1d_mlp(name: str, budget: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """The config patch of a playbook experiment: an MNIST-1D MLP on one CPU thread.

    Args:
        name: experiment name (the config's name is ``experiment-<name>``).
        budget: has ``num_samples``, ``depth``, ``width``, ``epochs``, ``batch_size``.
        patch: the experiment's own dotted keys (model, optimizer, schedule, ...).
    """
    return {
        "name": f"experiment-{name}",
        "data.source": "mnist1d",
        "data.num_samples": budget.num_samples,
        "model.depth": budget.depth,
        "model.width": budget.width,
        **patch,
        "train.epochs": budget.epochs,
        "train.batch_size": budget.batch_size,
        "train.threads": 1,  # small MLP: one thread is faster than two on 2 shared cores
        "device": "cpu",
    }


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after.

    Why: these models are small (≤ 256 units); on a busy 2-core machine two intra-op
    threads spin against other processes and one step took 33–126 ms against 3.5 ms with
    one thread (a 4-layer 128-wide MLP, batch 128, measured here). ``None`` leaves torch's
    setting alone.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_variants(
    base: Mapping[str, Any],
    variants: Sequence[Variant],
    seeds: Sequence[int],
    *,
    build: Build,
    measure_init: Measure | None = None,
    measure_final: Measure | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every variant for every seed and return one aggregated row per variant.

    Contract: run (variant, seed) is ``build(base, variant.patch | {"seed": seed})``, fitted
    by :func:`fit_one`.

    Returns:
        Rows in the order of ``variants``: ``{"name", "settings", "patch", "seeds",
        "metrics": {key: {"mean", "std", "values"}}, "curves": {key: [per-seed lists]},
        "extra": {"init": [...], "final": [...]}}``. Metric keys are those of
        :func:`fit_one` plus ``init_*`` / ``final_*`` for scalar measurements.
    """
    threads = torch.get_num_threads()  # a build may set the thread count process-wide
    try:
        rows = []
        for variant in variants:
            runs = []
            for seed in seeds:
                built = build(base, {**variant.patch, "seed": seed})
                result = fit_one(
                    built, seed, measure_init=measure_init, measure_final=measure_final
                )
                runs.append(result)
                if log is not None:
                    log(
                        f"  {variant.name:<14} seed {seed}: test acc "
                        f"{result['test_accuracy']:.3f} ({result['fit_time_s']:.1f} s)"
                    )
            rows.append(_aggregate(variant, runs))
        return rows
    finally:
        torch.set_num_threads(threads)  # leave the caller's thread count as it was


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column is left-aligned, others right."""
    align = [":---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: Path,
    name: str,
    table: str,
    setup: str,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
) -> None:
    """Write ``table.md`` (title, setup, table, wall time) and ``results.json`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wall = meta.get("wall_time_s")
    text = f"# Experiment: {name}\n\n{setup.strip()}\n\n{table}"
    if wall is not None:
        text += f"\nSeeds: {meta.get('seeds')}; wall time {wall:.1f} s.\n"
    atomic_write_text(out_dir / "table.md", text)
    payload = {"experiment": name, **meta, "rows": rows}
    atomic_write_text(out_dir / "results.json", json.dumps(payload, indent=1, default=str) + "\n")


def report(
    out_dir: Path,
    name: str,
    table: str,
    setup: str,
    rows: list[dict[str, Any]],
    *,
    seeds: list[int],
    quick: bool,
    budget: Any,
    started: float,
    **meta: Any,
) -> None:
    """:func:`write_outputs` with the usual metadata: seeds, quick, budget, wall time.

    Args:
        out_dir, name, table, setup, rows: as :func:`write_outputs`.
        seeds: the seeds run.
        quick: whether the tiny budget was used.
        budget: the experiment's budget dataclass (stored with :func:`dataclasses.asdict`).
        started: ``time.perf_counter()`` at the start; wall time = now − started.
        **meta: more entries for ``results.json`` (e.g. ``per_seed``).
    """
    write_outputs(
        out_dir,
        name,
        table,
        setup,
        rows,
        {
            "seeds": seeds,
            "quick": quick,
            "budget": asdict(budget),
            **meta,
            "wall_time_s": time.perf_counter() - started,
        },
    )
