"""Turn a validated :class:`~trainwell.config.Config` into plain calls and run it.

This is the only place (with the CLI) that reads config sections: it builds the data, the
model, the optimizer, schedule, clipping and penalties with ordinary Python calls, hands
them to a :class:`~trainwell.train.Trainer`, and writes the run folder::

    runs/NAME/config.toml      the fully resolved config
    runs/NAME/metrics.jsonl    one line per epoch
    runs/NAME/summary.json     final metrics, timings, versions, seed
    runs/NAME/checkpoints/     safetensors + JSON, written atomically
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import torch

from .. import data as tw_data
from .. import nn as tw_nn
from .. import optim as tw_optim
from .._version import __version__
from ..config import Config, to_toml
from ..data.dataset import Dataset, Split, select_classes
from ..errors import UserError
from ..train import Callback, Trainer
from ..train.checkpoint import atomic_write_text
from ..transfer import FreezeThenFineTune, count_blocks, load_source, reuse
from .fields import config_section

__all__ = ["Run", "RunResult", "apply_transfer", "build_data", "build_model", "build_optimizer",
           "build_run", "run", "prepare_run_dir", "run_model_args", "transfer_callbacks"]

_RUN_FILES = ("config.toml", "metrics.jsonl", "summary.json", "health.jsonl", "report.html")


@dataclass
class Run:
    """Everything a config builds, ready to fit."""

    config: Config
    data: Dataset
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    trainer: Trainer


@dataclass
class RunResult:
    """What a finished run reports."""

    history: list[dict[str, Any]]
    test_metrics: dict[str, float]
    summary: dict[str, Any]
    run_dir: Path | None
    run: Run | None = field(default=None, repr=False)


def build_data(config: Config) -> Dataset:
    """Load and prepare the dataset that ``config.data`` describes."""
    c = config.data
    options = dict(c.options)
    if c.num_samples is not None and c.source in ("mnist1d", "synthetic"):
        options.setdefault("num_samples", c.num_samples)
    with config_section("data"):
        data = tw_data.load(c.source, seed=config.seed, val_fraction=c.val_fraction,
                            standardize=c.standardize, download=c.download, **options)
        if c.classes is not None:
            data = select_classes(data, list(c.classes))
    if c.input_scale != 1.0:
        s = c.input_scale
        data = Dataset(Split(data.train.x * s, data.train.y), Split(data.val.x * s, data.val.y),
                       Split(data.test.x * s, data.test.y), data.task, data.num_classes,
                       data.name, data.info)
    return data


def build_model(config: Config, data: Dataset) -> torch.nn.Module:
    """Build the MLP or CNN of ``config.model`` for ``data``, initialized from the seed."""
    m = config.model
    out = m.out_features or data.out_features
    gen = torch.Generator().manual_seed(config.seed)
    common = dict(activation=m.activation, init=m.init, dropout=m.dropout,
                  batch_norm=m.batch_norm, generator=gen)
    if m.kind == "mlp":
        hidden = list(m.hidden) if m.hidden is not None else [m.width] * m.depth
        with config_section("model"):
            model = tw_nn.MLP(in_features=data.in_features, hidden=hidden, out_features=out,
                              output_activation=m.output_activation, **common)
    else:
        shape = data.feature_shape
        if len(shape) != 3:
            raise UserError(f"model.kind: a cnn needs image data (channels, height, width) but "
                            f"{data.name} samples have shape {shape}; use kind = \"mlp\"")
        with config_section("model"):
            model = tw_nn.CNN(in_shape=shape, channels=list(m.channels), out_features=out,
                              kernel_size=m.kernel_size, **common)
            if m.output_activation is not None:
                model = torch.nn.Sequential(model, tw_nn.activation(m.output_activation))
    _check_fits(model, data, config)
    return model


def _check_loss(config: Config, data: Dataset, outputs: int) -> None:
    """Refuse a loss that cannot fit the data or the model's output, before any file."""
    loss = config.train.loss
    if data.task == "classification" and loss == "mse":
        raise UserError("train.loss: 'mse' needs regression targets but the data have class "
                        "labels; use loss = \"auto\" (cross-entropy)")
    if loss == "bce" and (outputs != 1 or data.num_classes != 2):
        raise UserError(f"train.loss: 'bce' needs one output unit and two classes, but the model "
                        f"gives {outputs} outputs for {data.num_classes} classes; set "
                        "model.out_features = 1 and model.output_activation = \"sigmoid\" on a "
                        "two-class task, or use loss = \"auto\"")
    if loss == "nll" and config.model.output_activation != "log_softmax":
        raise UserError("train.loss: 'nll' takes log-probabilities (as in torch) but the model "
                        "outputs logits; set model.output_activation = \"log_softmax\", or use "
                        "loss = \"auto\"")


def _check_fits(model: torch.nn.Module, data: Dataset, config: Config) -> None:
    """One forward pass on two samples, so a shape mismatch is an error line, not a traceback."""
    x = data.train.x[:2]
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            out = model(x)
            model.train(was)
    except RuntimeError as e:
        raise UserError(f"model: input of shape {tuple(x.shape[1:])} from {data.name} does not "
                        f"fit the model ({str(e).splitlines()[0]}); check model.kind and the "
                        "data source") from None
    _check_loss(config, data, int(out.shape[-1]))
    if data.task == "classification" and out.shape[-1] not in (1, data.num_classes):
        raise UserError(f"model.out_features: the model gives {out.shape[-1]} outputs but the data "
                        f"have {data.num_classes} classes; leave out_features unset")


def build_optimizer(config: Config, params) -> torch.optim.Optimizer:
    """The optimizer of ``config.optim`` over ``params`` (fields left unset take defaults)."""
    o = config.optim
    hyper: dict[str, Any] = {"lr": o.lr, "weight_decay": o.weight_decay}
    for name in ("momentum", "beta", "betas", "eps", "convention"):
        value = getattr(o, name)
        if value is not None:
            hyper[name] = tuple(value) if name == "betas" else value
    with config_section("optim"):
        return tw_optim.build(o.name, params, **hyper)


def _build_schedule(config: Config, steps_per_epoch: int):
    s = config.schedule
    total = config.train.epochs * (steps_per_epoch if s.unit == "step" else 1)
    # A peak or starting LR left out of schedule.params stays unset: schedules.apply takes it
    # from the optimizer's groups, whose lr is optim.lr, so one field sets the LR.
    schedule = tw_optim.schedules.build(s.name, lr_from_optimizer=True, **s.params)
    try:
        return tw_optim.schedules.with_total_steps(schedule, total)
    except ValueError as e:
        raise UserError(f"schedule.params.total_steps: the run has only {total} {s.unit}s for "
                        f"{s.name} ({e}); train longer or use schedule.name = \"constant\"") from None


def build_run(config: Config, *, callbacks: Sequence[Callback] = (), run_dir: Path | None = None,
              progress: bool = False, data: Dataset | None = None) -> Run:
    """Build data, model, optimizer and an unfitted Trainer from ``config``."""
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    data = build_data(config) if data is None else data
    model = build_model(config, data)
    extra_callbacks: list[Callback] = []
    if config.transfer.from_ is not None:
        model = apply_transfer(config, model, data)
        extra_callbacks = transfer_callbacks(config)
    optimizer = build_optimizer(config, model.parameters())
    steps = -(-len(data.train) // config.train.batch_size)
    schedule = _build_schedule(config, steps)
    plateau = None
    if config.schedule.plateau is not None:
        p = config.schedule.plateau
        plateau = tw_optim.schedules.Performance(factor=p.factor, patience=p.patience,
                                                 min_lr=p.min_lr)
    if isinstance(schedule, tw_optim.schedules.Performance) and plateau is not None:
        raise UserError("schedule.plateau: schedule.name = \"performance\" is already the "
                        "plateau controller; drop schedule.plateau or choose another name")
    clip_cfg = config.optim.clip
    with config_section("optim.clip"):
        clip = None if clip_cfg.kind == "none" else tw_optim.clip.build(clip_cfg.kind, clip_cfg.threshold)
    r = config.regularization
    with config_section("regularization"):
        penalty = tw_optim.penalties.Penalty(l1=r.l1, l2=r.l2) if (r.l1 or r.l2) else None
    max_norm = None
    if r.max_norm is not None:
        limit = r.max_norm

        def max_norm(model: torch.nn.Module) -> None:
            tw_nn.max_norm_(model, limit)

    trainer = Trainer(model, optimizer, epochs=config.train.epochs,
                      batch_size=config.train.batch_size, seed=config.seed, loss=config.train.loss,
                      schedule=schedule, schedule_unit=config.schedule.unit, plateau=plateau,
                      clip=clip, penalty=penalty, max_norm=max_norm,
                      log_grad_norm=config.train.log_grad_norm,
                      precision=config.train.precision, accumulate=config.train.accumulate,
                      compile=config.train.compile,
                      callbacks=[*extra_callbacks, *callbacks],
                      device=config.device, run_dir=run_dir,
                      checkpoint_every=config.train.checkpoint_every, progress=progress)
    # The schema bounds the Trainer's arguments; check() names its own (loss, ...) for the front.
    with config_section("train"):
        trainer.check(data)  # a schedule that does not fit the run fails here, before any file
    return Run(config, data, model, optimizer, trainer)


def apply_transfer(config: Any, model: torch.nn.Module, data: Dataset | None = None) -> torch.nn.Module:
    """Copy the reused layers named by ``config.transfer`` into the freshly built ``model``.

    Contract: ``reuse(config.transfer.from_, n_layers=config.transfer.n_layers,
    model=model)``: the first ``n_layers`` hidden blocks (all of the source's when unset)
    get the source run's trained values; the head and any deeper blocks keep their fresh
    initialization. The model must be built like the source for the reused blocks.

    Args:
        config: a run config with a ``transfer`` section (``from_``, ``n_layers``).
        model: the model built from ``config.model`` for this run's data.
        data: unused; accepted so the runner can pass it.

    Returns:
        ``model``, changed in place.

    Raises:
        UserError: an unreadable source, or names and shapes that do not match.
    """
    section = config.transfer
    if section.from_ is None:
        return model
    with config_section("transfer"):
        return reuse(section.from_, n_layers=section.n_layers, model=model)


def transfer_callbacks(config: Any) -> list[Callback]:
    """The callbacks a config run needs for ``transfer.freeze_epochs`` (empty when 0).

    Contract: with ``freeze_epochs > 0``, one :class:`~trainwell.transfer.FreezeThenFineTune`
    freezing the reused blocks (``blocks.0 .. blocks.{n-1}``) for ``freeze_epochs`` epochs,
    then scaling the learning rate by ``fine_tune_lr_factor``.

    Args:
        config: a run config with a ``transfer`` section.

    Returns:
        A list of callbacks to pass to the Trainer.
    """
    section = config.transfer
    if section.from_ is None or section.freeze_epochs == 0:
        return []
    if section.n_layers is not None:
        n = int(section.n_layers)
    else:
        with config_section("transfer"):
            n = count_blocks(load_source(section.from_)[0])
    if n == 0:
        return []
    return [FreezeThenFineTune(n, freeze_epochs=section.freeze_epochs,
                               lr_factor=section.fine_tune_lr_factor)]


def run_model_args(source: str | Path) -> dict[str, Any] | None:
    """The ``[model]`` table of a run folder's ``config.toml``: how its MLP was built.

    Pass it as ``model_args`` to :func:`trainwell.transfer.reuse` to rebuild a run's model
    from the folder alone. None for a file, or a folder without ``config.toml``.

    Raises:
        UserError: a ``config.toml`` that is not valid TOML.
    """
    cfg = Path(source) / "config.toml"
    if not cfg.is_file():
        return None
    try:
        return dict(tomllib.loads(cfg.read_text(encoding="utf-8")).get("model", {}))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"transfer.from: {cfg} is not valid TOML ({e})") from None


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Make ``out`` ready: reuse it to resume, or clear a previous run's files from it.

    A folder that holds files trainwell did not write is refused, never emptied.
    """
    if resume or not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another --out")
    ours = set(_RUN_FILES) | {"checkpoints", "plots"}
    foreign = [p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")]
    if foreign:
        raise UserError(f"--out {out}: holds files that are not a trainwell run ({foreign[0]}, ...); "
                        "choose an empty or new folder")
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def versions() -> dict[str, str]:
    """Versions that decide whether two runs can be bit-identical."""
    return {"trainwell": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def run(config: Config, out_dir: str | Path | None, *, callbacks: Sequence[Callback] = (),
        progress: bool = True, resume: bool = False, started: float | None = None) -> RunResult:
    """Build and fit ``config``; write the run folder when ``out_dir`` is given.

    Everything that can fail on bad input (config, data, model shape, checkpoint) is checked
    before the folder is touched, so a bad run leaves nothing half-written.
    """
    started = time.perf_counter() if started is None else started
    out = Path(out_dir) if out_dir is not None else None
    built = build_run(config, callbacks=callbacks, run_dir=out, progress=progress)
    main = built.trainer.dist.is_main  # under torchrun only rank 0 writes the folder
    if out is not None:
        if resume:
            saved = out / "config.toml"
            if not saved.is_file():
                raise UserError(f"--resume {out}: no config.toml there; give the folder of a run")
            built.trainer.restore()  # a checkpoint that does not fit fails before any write
        if main:
            prepare_run_dir(out, resume)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "config.toml", to_toml(config))
    t_fit = time.perf_counter()
    history = built.trainer.fit(built.data, resume=resume)
    fit_s = time.perf_counter() - t_fit
    trainer = built.trainer
    final = {"train": trainer.evaluate(built.data.train), "val": trainer.evaluate(built.data.val),
             "test": trainer.evaluate(built.data.test)}
    samples = len(built.data.train) * len(history)
    train_s = sum(h["epoch_time_s"] for h in history)  # all epochs, also those before a resume
    summary = {
        "name": config.name,
        "seed": config.seed,
        "device": str(trainer.device),
        "epochs": len(history),
        "steps": trainer.step,
        "skipped_steps": trainer.skipped_steps,
        "failure": trainer.failure,  # None, or the line the CLI prints before exit code 1
        "final": final,
        "fit_time_s": fit_s,
        "wall_time_s": time.perf_counter() - started,
        "train_time_s": train_s,
        "samples_per_s": samples / train_s if train_s > 0 else None,
        "threads": torch.get_num_threads(),
        "world_size": trainer.dist.world_size,  # processes under torchrun (1 without)
        "versions": versions(),
    }
    if out is not None and main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return RunResult(history, final["test"], summary, out, built)
