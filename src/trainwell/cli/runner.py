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
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
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
from ..data.augment import Augment
from ..data.dataset import Dataset, Split, select_classes
from ..doctor.rollback import RollbackGuard
from ..errors import UserError
from ..train import (
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    TensorBoardLogger,
    Trainer,
)
from ..train.checkpoint import atomic_write_text, clean_leftovers
from ..transfer import FreezeThenFineTune, count_blocks, load_source, reuse
from .fields import config_section
from .rundir import after_failure, claim_run_dir, record_created
from .targets import (
    TorchData,
    build_target_model,
    call_target,
    first_inputs,
    search_path,
    to_run_data,
)

__all__ = ["Run", "RunResult", "apply_transfer", "build_data", "build_model", "build_optimizer",
           "build_run", "run", "run_model_args", "transfer_callbacks"]



@dataclass
class Run:
    """Everything a config builds, ready to fit."""

    config: Config
    data: Dataset | TorchData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    trainer: Trainer

    def fit(self, *, resume: bool = False, until: int | None = None) -> list[dict[str, Any]]:
        """Train the built run (``until``: pause after that many epochs, see Trainer.fit)."""
        if isinstance(self.data, TorchData):
            return self.trainer.fit(self.data.train, val=self.data.val, resume=resume,
                                    until=until)
        return self.trainer.fit(self.data, resume=resume, until=until)


@dataclass
class RunResult:
    """What a finished run reports."""

    history: list[dict[str, Any]]
    test_metrics: dict[str, float]
    summary: dict[str, Any]
    run_dir: Path | None
    run: Run | None = field(default=None, repr=False)


def build_data(config: Config) -> Dataset | TorchData:
    """Load and prepare the dataset that ``config.data`` describes (or its target returns)."""
    c = config.data
    if c.target is not None:
        with search_path(Path(config.root) if config.root else None):
            return to_run_data(call_target(c.target, "data.target", dict(c.kwargs)), c.target)
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


def _swap_user_activations(model: torch.nn.Module, new: str, data: Dataset | TorchData) -> None:
    """``model.swap_activation`` on a user's model; a model without activation modules is
    refused (its activations are in ``forward``: a code change)."""
    sample = data.train.x[:2] if isinstance(data, Dataset) else first_inputs(data)
    with config_section("model"):
        if not tw_nn.swap_activations(model, new, sample):
            raise UserError("model.swap_activation: your model has no hidden activation "
                            "modules to replace (activations called in forward are a code "
                            "change); remove the setting")


def build_model(config: Config, data: Dataset | TorchData) -> torch.nn.Module:
    """Build the model of ``config.model`` for ``data``, initialized from the seed.

    ``model.target`` names the user's own builder (called with ``model.kwargs``); otherwise
    ``kind`` picks trainwell's MLP, CNN (1-D for ``(C, L)`` samples, 2-D for ``(C, H, W)``)
    or ResNet (images).
    """
    m = config.model
    if m.target is not None:
        with search_path(Path(config.root) if config.root else None):
            user_model = build_target_model(m.target, dict(m.kwargs), config.seed)
        if m.swap_activation is not None:  # the doctor's activation swap (modules only)
            _swap_user_activations(user_model, m.swap_activation, data)
        if m.reinit:  # the doctor's re-initialization of a model whose code it cannot edit
            with config_section("model"):
                tw_nn.apply_init(user_model, m.init, torch.Generator().manual_seed(config.seed),
                                 activation=m.activation, bias_init=m.bias_init,
                                 head_init=m.head_init)
        _check_fits(user_model, data, config)
        return user_model
    if isinstance(data, TorchData):
        shape = tuple(first_inputs(data).shape[1:])
        if m.out_features is None:
            raise UserError("model.out_features: set it when data.target gives torch datasets "
                            "(trainwell does not read every label to count the classes)")
        out, in_features, name = m.out_features, int(torch.Size(shape).numel()), data.name
    else:
        shape, out = data.feature_shape, m.out_features or data.out_features
        in_features, name = data.in_features, data.name
    gen = torch.Generator().manual_seed(config.seed)
    common: dict[str, Any] = dict(activation=m.activation, init=m.init, batch_norm=m.batch_norm,
                                  generator=gen, bias_init=m.bias_init, head_init=m.head_init)
    with config_section("model"):
        if m.kind == "mlp":
            hidden = list(m.hidden) if m.hidden is not None else [m.width] * m.depth
            model: torch.nn.Module = tw_nn.MLP(
                in_features=in_features, hidden=hidden, out_features=out, dropout=m.dropout,
                output_activation=m.output_activation, **common)
        elif m.kind == "cnn":
            if len(shape) not in (1, 2, 3):
                raise UserError(f"model.kind: a cnn needs sequences (channels, length) or images "
                                f"(channels, height, width) but {name} samples have shape "
                                f"{shape}; use kind = \"mlp\"")
            model = tw_nn.CNN(in_shape=shape, channels=list(m.channels), out_features=out,
                              kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                              pool=m.pool, dropout=m.dropout,
                              hidden=list(m.hidden) if m.hidden is not None else [], **common)
            if m.output_activation is not None:
                model = torch.nn.Sequential(model, tw_nn.activation(m.output_activation))
        else:
            if len(shape) != 3:
                raise UserError(f"model.kind: a resnet needs image data (channels, height, "
                                f"width) but {name} samples have shape {shape}; use kind = "
                                "\"mlp\" or \"cnn\"")
            model = tw_nn.resnet(in_shape=shape, num_classes=out, widths=list(m.channels),
                                 blocks=list(m.blocks or [1] * len(m.channels)),
                                 activation=m.activation, init=m.init, generator=gen)
    _check_fits(model, data, config)
    return model


def _check_loss(config: Config, data: Dataset, outputs: int) -> None:
    """Refuse a loss that cannot fit the data or the model's output, before any file."""
    loss = config.train.loss
    if data.task == "classification" and loss in ("mse", "mae", "huber"):
        raise UserError(f"train.loss: {loss!r} needs regression targets but the data have class "
                        "labels; use loss = \"auto\" (cross-entropy)")
    if loss == "bce_logits" and (outputs != 1 or data.num_classes != 2):
        raise UserError(f"train.loss: 'bce_logits' needs one output unit (a logit) and two "
                        f"classes, but the model gives {outputs} outputs for {data.num_classes} "
                        "classes; set model.out_features = 1 on a two-class task")
    if loss == "bce" and (outputs != 1 or data.num_classes != 2):
        raise UserError(f"train.loss: 'bce' needs one output unit and two classes, but the model "
                        f"gives {outputs} outputs for {data.num_classes} classes; set "
                        "model.out_features = 1 and model.output_activation = \"sigmoid\" on a "
                        "two-class task, or use loss = \"auto\"")
    if loss == "nll" and config.model.output_activation != "log_softmax":
        raise UserError("train.loss: 'nll' takes log-probabilities (as in torch) but the model "
                        "outputs logits; set model.output_activation = \"log_softmax\", or use "
                        "loss = \"auto\"")


def _check_fits(model: torch.nn.Module, data: Dataset | TorchData, config: Config) -> None:
    """One forward pass on two samples, so a shape mismatch is an error line, not a traceback."""
    if isinstance(data, TorchData) or config.model.target is not None:
        return  # the user's model and data: the first training batch tells (Trainer.check)
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


def build_optimizer(config: Config, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``config.optim`` over ``params`` (fields left unset take defaults)."""
    o = config.optim
    hyper: dict[str, Any] = {"lr": o.lr, "weight_decay": o.weight_decay}
    for name in ("momentum", "beta", "betas", "eps", "convention"):
        value = getattr(o, name)
        if value is not None:
            hyper[name] = tuple(value) if name == "betas" else value
    with config_section("optim"):
        return tw_optim.build(o.name, params, **hyper)


def _steps_per_epoch(config: Config, data: Dataset | TorchData) -> int | None:
    """Optimizer steps per epoch, or None for data of unknown length (the Trainer checks)."""
    t = config.train
    train = data.train
    if isinstance(train, torch.utils.data.DataLoader):
        try:
            n = len(train)
        except TypeError:
            return None
        return -(-n // t.accumulate)
    try:
        n = len(train)
    except TypeError:
        return None
    return -(-n // (t.batch_size * t.accumulate))


def config_callbacks(config: Config, run_dir: Path | None) -> list[Callback]:
    """The Trainer callbacks that ``config.train`` asks for, in a fixed order."""
    t = config.train
    out: list[Callback] = []
    if t.rollback_every is not None:
        out.append(RollbackGuard(every=t.rollback_every))
    with config_section("train"):
        if t.early_stopping is not None:
            es = t.early_stopping
            out.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta,
                                     es.restore_best))
        best = t.best
        if best is None and t.early_stopping is not None and t.early_stopping.restore_best \
                and run_dir is not None:  # lets restore_best survive a resume
            best_monitor, best_mode, delta = (t.early_stopping.monitor, t.early_stopping.mode,
                                              t.early_stopping.min_delta)
            out.append(BestCheckpoint(best_monitor, best_mode, delta))
        elif best is not None:
            out.append(BestCheckpoint(best.monitor, best.mode, best.min_delta))
        if t.log.csv or t.log.csv_steps:
            out.append(CSVLogger(steps=t.log.csv_steps))
    if t.log.tensorboard:
        with config_section("train.log"):
            out.append(TensorBoardLogger(steps=t.log.tensorboard_steps))
    return out


def _build_schedule(config: Config, steps_per_epoch: int | None) -> Any:
    s = config.schedule
    # A peak or starting LR left out of schedule.params stays unset: schedules.apply takes it
    # from the optimizer's groups, whose lr is optim.lr, so one field sets the LR.
    schedule = tw_optim.schedules.build(s.name, lr_from_optimizer=True, **s.params)
    if steps_per_epoch is None:
        return schedule  # the Trainer fills the length once it knows it
    total = config.train.epochs * (steps_per_epoch if s.unit == "step" else 1)
    try:
        return tw_optim.schedules.with_total_steps(schedule, total)
    except ValueError as e:
        raise UserError(f"schedule.params.total_steps: the run has only {total} {s.unit}s for "
                        f"{s.name} ({e}); train longer or use schedule.name = \"constant\"") from None


def build_run(config: Config, *, callbacks: Sequence[Callback] = (), run_dir: Path | None = None,
              progress: bool = False, data: Dataset | TorchData | None = None) -> Run:
    """Build data, model, optimizer and an unfitted Trainer from ``config``.

    Callbacks the config asks for (early stopping, best checkpoint, loggers) come after the
    transfer callbacks and before ``callbacks``, always in the same order: a resume matches
    callback states by position.
    """
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    data = build_data(config) if data is None else data
    model = build_model(config, data)
    extra_callbacks: list[Callback] = []
    if config.transfer.from_ is not None:
        model = apply_transfer(config, model)
        extra_callbacks = transfer_callbacks(config)
    extra_callbacks += config_callbacks(config, run_dir)
    optimizer = build_optimizer(config, model.parameters())
    schedule = _build_schedule(config, _steps_per_epoch(config, data))
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

    with config_section("train"):  # names train.* in the Trainer's argument errors
        trainer = Trainer(model, optimizer, epochs=config.train.epochs,
                          batch_size=config.train.batch_size, seed=config.seed,
                          loss=config.train.loss, schedule=schedule,
                          schedule_unit=config.schedule.unit, plateau=plateau,
                          clip=clip, penalty=penalty, max_norm=max_norm,
                          log_grad_norm=config.train.log_grad_norm,
                          precision=config.train.precision, accumulate=config.train.accumulate,
                          compile=config.train.compile,
                          augment=None if config.data.augment is None else Augment(
                              crop_padding=config.data.augment.crop_padding,
                              flip=config.data.augment.flip),
                          callbacks=[*extra_callbacks, *callbacks],
                          device=config.device, run_dir=run_dir,
                          checkpoint_every=config.train.checkpoint_every,
                          checkpoint_every_steps=config.train.checkpoint_every_steps,
                          sync_batch_norm=config.train.sync_batch_norm, progress=progress)
    # The schema bounds the Trainer's arguments; check() names its own (loss, ...) for the front.
    with config_section("train"):
        # a schedule that does not fit the run fails here, before any file
        if isinstance(data, TorchData):
            trainer.check(data.train, val=data.val)
        else:
            trainer.check(data)
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
    if config.train.sync_batch_norm and not built.trainer.dist.active:
        print("note: train.sync_batch_norm has no effect in one process (it shares batch-norm "
              "statistics between torchrun's processes)", file=sys.stderr)
    if out is not None:
        if resume:
            saved = out / "config.toml"
            if not saved.is_file():
                raise UserError(f"--resume {out}: no config.toml there; give the folder of a run")
            built.trainer.restore()  # a checkpoint that does not fit fails before any write
            if main:
                clean_leftovers(out)  # .tmp and orphan tensor files of the killed run
        elif main:
            claim_run_dir(out)  # every check passed: the run's first file goes in now
        if main:
            atomic_write_text(out / "config.toml", to_toml(config))
    t_fit = time.perf_counter()
    try:
        history = built.fit(resume=resume)
    except BaseException:
        if out is not None and main:  # keep a resumable folder, or remove only what it wrote
            print(f"note: {after_failure(out)}", file=sys.stderr)
        raise
    fit_s = time.perf_counter() - t_fit
    trainer = built.trainer
    data = built.data
    final = {name: trainer.evaluate(split) if split is not None else {}
             for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    train_set = getattr(data.train, "dataset", data.train)  # a DataLoader counts batches
    try:
        samples: int | None = len(train_set) * len(history)
    except TypeError:  # an iterable dataset of unknown length
        samples = None
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
        "samples_per_s": samples / train_s if samples is not None and train_s > 0 else None,
        "threads": torch.get_num_threads(),
        "world_size": trainer.dist.world_size,  # processes under torchrun (1 without)
        "versions": versions(),
    }
    if out is not None and main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        record_created(out)
    return RunResult(history, final["test"], summary, out, built)
