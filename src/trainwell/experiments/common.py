"""Shared parts of the playbook experiments: run config variants over seeds, tabulate, plot.

An experiment is a base :class:`~trainwell.config.Config` plus named :class:`Variant`
patches (dotted config keys, applied with :func:`trainwell.config.apply_patch`). Each
variant is trained once per seed through :func:`trainwell.runner.build_run`; the data of a
(data section, seed) pair is loaded once and shared by every variant, so variants differ
only in what their patch changes. Results are reduced to mean ± sample standard deviation
(n − 1) over seeds and written under ``runs/experiments/NAME/``::

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cli.experiments import add_arguments, cli, run_command, seed_list  # re-exported
from ..config import Config, apply_patch, load_config
from ..train.checkpoint import atomic_write_text
from .plots import plot_curves, pyplot, save_figure  # re-exported: experiments use common.*

__all__ = [
    "Variant",
    "seed_list",
    "base_config",
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
    "add_arguments",
    "run_command",
    "cli",
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


def base_config(patch: dict[str, Any]) -> Config:
    """The built-in default config with ``patch`` (dotted keys) applied and validated."""
    return apply_patch(load_config(None), patch)


Measure = Callable[[Any], dict[str, Any]]


def fit_one(
    config: Config,
    *,
    data: Any = None,
    measure_init: Measure | None = None,
    measure_final: Measure | None = None,
) -> dict[str, Any]:
    """Build and fit ``config`` once (no run folder); return its final metrics and curves.

    Args:
        config: a validated config (its seed seeds data split, init, shuffling, dropout).
        data: a prepared :class:`~trainwell.data.Dataset` to reuse, or None to load it.
        measure_init: called with the built :class:`~trainwell.runner.Run` before fitting;
            its dict is stored under ``"init"``.
        measure_final: called with the fitted run; its dict is stored under ``"final"``.

    Returns:
        ``{"seed", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
        "test_accuracy", "steps", "skipped_steps", "fit_time_s", "curves", "init", "final"}``
        where the split metrics are evaluated after training in eval mode (no dropout) and
        ``curves`` maps each of :data:`CURVE_KEYS` to its per-epoch list.
    """
    from ..cli.runner import build_run  # imported lazily: keeps `--help` fast

    built = build_run(config, data=data, progress=False)
    init = measure_init(built) if measure_init is not None else {}
    t0 = time.perf_counter()
    history = built.trainer.fit(built.data)
    fit_s = time.perf_counter() - t0
    out: dict[str, Any] = {"seed": config.seed}
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


def _aggregate(variant: Variant, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Reduce per-seed results to a row: mean/std of every scalar, curves kept per seed."""
    getters: dict[str, Callable[[dict[str, Any]], Any]] = {
        k: (lambda r, k=k: r[k])
        for k, v in runs[0].items()
        if isinstance(v, int | float) and k != "seed"
    }
    for group in ("init", "final"):
        for k, v in runs[0][group].items():
            if isinstance(v, int | float):
                getters[f"{group}_{k}"] = lambda r, g=group, k=k: r[g][k]
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
    import torch

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
    base: Config,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    *,
    measure_init: Measure | None = None,
    measure_final: Measure | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every variant for every seed and return one aggregated row per variant.

    Contract: run (variant, seed) uses ``apply_patch(base, variant.patch | {"seed": seed})``;
    data are loaded once per distinct (data section, seed) and shared across variants.

    Returns:
        Rows in the order of ``variants``: ``{"name", "settings", "patch", "seeds",
        "metrics": {key: {"mean", "std", "values"}}, "curves": {key: [per-seed lists]},
        "extra": {"init": [...], "final": [...]}}``. Metric keys are those of
        :func:`fit_one` plus ``init_*`` / ``final_*`` for scalar measurements.
    """
    import torch

    from ..cli.runner import build_data

    threads = torch.get_num_threads()  # build_run applies train.threads process-wide
    try:
        return _run_all(base, variants, seeds, build_data, measure_init, measure_final, log)
    finally:
        torch.set_num_threads(threads)  # leave the caller's thread count as it was


def _run_all(
    base: Config,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    build_data: Callable[[Config], Any],
    measure_init: Measure | None,
    measure_final: Measure | None,
    log: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    cache: dict[str, Any] = {}  # (data section, seed) -> Dataset, shared by the variants
    rows = []
    for variant in variants:
        runs = []
        for seed in seeds:
            config = apply_patch(base, {**variant.patch, "seed": seed})
            key = json.dumps([config.data.model_dump(mode="json"), seed], sort_keys=True)
            if key not in cache:
                cache[key] = build_data(config)
            result = fit_one(
                config, data=cache[key], measure_init=measure_init, measure_final=measure_final
            )
            runs.append(result)
            if log is not None:
                log(
                    f"  {variant.name:<14} seed {seed}: test acc {result['test_accuracy']:.3f} "
                    f"({result['fit_time_s']:.1f} s)"
                )
        rows.append(_aggregate(variant, runs))
    return rows


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
