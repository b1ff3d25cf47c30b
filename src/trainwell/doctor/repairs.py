"""Repairs: named changes, each described once, as a config patch and as a live action.

This is the *act* step. A :class:`Repair` is a frozen description: its name, a sentence,
and ``changes``, the config fields it sets with the values it sets them to (a value may be
a function of the run's :class:`Current` state, e.g. the learning rate ×0.1). Both forms
are derived from that one description:

- ``patch(config) -> dict | None``: the changes as dotted keys for the front
  (``{"model.init": "auto"}``), or None when the config already has them;
- ``apply(model, optimizer) -> dict``: the same changes on live objects, field by field
  through :data:`FIELD_ACTIONS`, in place; it returns keyword arguments the caller passes
  on (``{"clip": ...}`` for the Trainer, ``{"optimizer": ...}``, ``{"schedule": ...}``).

Findings name their repairs in rank order (see :mod:`trainwell.doctor.rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import nn as tw_nn
from .. import optim as tw_optim
from ..data.dataset import standardize
from ..train.early_stopping import EarlyStopping
from .probes import describe_layers
from .rollback import RollbackGuard

__all__ = ["FIELD_ACTIONS", "REPAIRS", "Current", "Repair", "RollbackGuard"]

LR_DOWN = 0.1  # one decade: lr 1–10 → 0.1–1 still too high, so the loop may chain trials
LR_UP = 100.0  # flat loss at lr ≤ 1e-5 needs ≥ 2 decades to move within a short budget


def _decimal(x: float) -> float:
    """``x`` to 12 significant digits: 3 × 0.1 is written 0.3 in repaired.toml, not
    0.30000000000000004 (a relative change of 1e-16; the rate means the same)."""
    return float(f"{x:.12g}")
USUAL_LR_ADAPTIVE = 3e-3  # trainwell's default for Adam-family optimizers
USUAL_LR_SGD = 0.05  # …and for the SGD family, with standardized inputs
ADAM_LR = 1e-3  # Kingma & Ba's default, for the switch to Adam
CLIP_NORM = 1.0  # global-norm threshold: healthy standardized runs sit at 0.5–5
L2 = 1e-3  # λ2 for the overfitting repair
DROPOUT = 0.3
PLATEAU = {"factor": 0.5, "patience": 2}  # halve the LR after 2 epochs without progress
ROLLBACK_EVERY = 10  # steps between saved copies for the rollback guard
# Stop 3 epochs after the best validation loss and keep the best weights; the overfitting
# rule asks for the same 3 epochs (thresholds.OVERFIT_PATIENCE), so what it reports at the
# diagnostic budget, early stopping at that budget sees.
EARLY_STOPPING = {"patience": 3, "restore_best": True}
# reduce_regularization: dropout and penalties ÷10 (dropout 0.9 → 0.09), at most the usual
# strengths (DROPOUT, L2, L1: λ2 0.5 → 1e-3, as ÷10 leaves 0.05, which still held the
# over_regularized case at 0.81 against 0.96 healthy), and off below REG_OFF.
REG_DOWN = 10.0
L1 = 1e-4
REG_OFF = 1e-5
_KEPT_LOSSES = ("mse", "mae", "huber")  # regression losses fix_output_head keeps
_ADAPTIVE = ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad")


@dataclass(frozen=True)
class Current:
    """What a repair needs to know about the run, read from a config or from live objects.

    Attributes:
        lr: the learning rate (of the first parameter group for live objects).
        adaptive: an Adam-family/RMSProp/AdaGrad optimizer (else the SGD family).
        activation: the hidden activation name (None when unknown).
        settings: the config's value of each field a repair sets (empty for live objects:
            a live action always applies).
    """

    lr: float
    adaptive: bool
    activation: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def usual_lr(self) -> float:
        """The family's usual starting LR (3e-3 adaptive, 0.05 SGD)."""
        return USUAL_LR_ADAPTIVE if self.adaptive else USUAL_LR_SGD


Value = Any | Callable[[Current], Any]


@dataclass(frozen=True)
class Repair:
    """A named repair: one description from which its config patch and live action derive.

    Attributes:
        name: registry key.
        description: the change in words.
        changes: config field → value (or ``Current -> value``), in order.
        needed: ``Current -> bool`` from a config's settings; False makes the patch None.
        python_only: no config field expresses it (the patch is always None).
        reads: further config fields ``needed`` looks at (beside those it changes).
    """

    name: str
    description: str
    changes: Mapping[str, Value] = field(default_factory=dict)
    needed: Callable[[Current], bool] = lambda cur: True
    python_only: bool = False
    reads: tuple[str, ...] = ()

    def values(self, cur: Current) -> dict[str, Any]:
        """The changes with every value resolved against ``cur``."""
        return {k: (v(cur) if callable(v) else v) for k, v in self.changes.items()}

    def patch(self, config: Any) -> dict[str, Any] | None:
        """Dotted-key changes to a config, or None when it does not apply to it."""
        if self.python_only:
            return None
        try:
            cur = _from_config(config, [*self.changes, *self.reads])
        except AttributeError:
            return None  # this config version has no such field: the repair cannot apply
        return self.values(cur) if self.needed(cur) else None

    def apply(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """The same changes on ``model``/``optimizer`` in place; returns Trainer kwargs.

        Args:
            model: the model to change.
            optimizer: its optimizer.
            generator: randomness for re-initialization (the run's seed gives the weights
                a patched config would build).
        """
        cur = _from_live(model, optimizer)
        values = self.values(cur)
        out: dict[str, Any] = {}
        for key, value in values.items():
            action = FIELD_ACTIONS.get(key)
            if action is not None:
                out.update(action(model, optimizer, value, values, generator) or {})
        return out


def _get(config: Any, dotted: str) -> Any:
    obj = config
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _from_config(config: Any, fields: Sequence[str]) -> Current:
    settings = {k: _get(config, k) for k in fields}
    optim = config.optim
    return Current(optim.lr, optim.name in _ADAPTIVE, config.model.activation, settings)


def _from_live(model: nn.Module, optimizer: torch.optim.Optimizer) -> Current:
    group = optimizer.param_groups[0]
    adaptive = "betas" in group or "alpha" in group or "lr_decay" in group
    acts = [i.activation for i in describe_layers(model)[:-1] if i.activation]
    return Current(float(group["lr"]), adaptive, acts[0] if acts else None)


# ---- live actions, one per config field -------------------------------------------------
def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    # Find every slot first: ``new`` may contain ``old`` (a wrapper), and a walk that
    # replaced as it went would find ``old`` again inside ``new``.
    slots = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if child is old
    ]
    for parent, name in slots:
        setattr(parent, name, new)


def _set_lr(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    if "optim.name" in values:
        return None  # a new optimizer takes the rate (see _new_optimizer)
    tw_optim.schedules.set_base_lr(optimizer, value)  # apply() derives each step's lr from it
    return None


def _new_optimizer(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> dict[str, Any]:
    decay = optimizer.param_groups[0].get("weight_decay", 0.0)
    return {
        "optimizer": tw_optim.build(
            value, model.parameters(), lr=values["optim.lr"], weight_decay=decay
        )
    }


def _init(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    act = values.get("model.activation")
    if act is None:
        acts = [i.activation for i in describe_layers(model)[:-1] if i.activation]
        act = acts[0] if acts else "relu"
    tw_nn.apply_init(model, value, generator=gen, activation=act,
                     bias_init=values.get("model.bias_init") or "zeros")


def _activation(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    head = describe_layers(model)[-1].act_module if describe_layers(model) else None
    for info in describe_layers(model)[:-1]:
        if info.act_module is not None and info.act_module is not head:
            _replace_module(model, info.act_module, tw_nn.activation(value))


def _batch_norm(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    # Wrap each hidden Linear as Linear → BatchNorm1d; new parameters join the optimizer.
    new: list[nn.Parameter] = []
    for info in describe_layers(model)[:-1]:
        if isinstance(info.module, nn.Linear):
            bn = nn.BatchNorm1d(info.fan_out)
            new += list(bn.parameters())
            _replace_module(model, info.module, nn.Sequential(info.module, bn))
    if new:
        optimizer.add_param_group({"params": new})


def _dropout(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    existing = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if existing:  # the model has dropout: set its rate (e.g. reduce_regularization)
        for m in existing:
            m.p = float(value) if value is not None else _weaker(m.p, DROPOUT) or 0.0
        return
    if value is None:
        return
    for info in describe_layers(model)[:-1]:
        if info.act_module is not None:
            _replace_module(
                model, info.act_module, nn.Sequential(info.act_module, nn.Dropout(value))
            )


def _head(
    model: nn.Module, optimizer: torch.optim.Optimizer, value: Any, values: Mapping[str, Any],
    gen: torch.Generator | None,
) -> None:
    layers = describe_layers(model)
    act = layers[-1].act_module if layers else None
    if value is None and act is not None:
        _replace_module(model, act, nn.Identity())


FIELD_ACTIONS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "optim.lr": _set_lr,
    "optim.name": _new_optimizer,
    "model.init": _init,
    "model.activation": _activation,
    "model.batch_norm": _batch_norm,
    "model.dropout": _dropout,
    "model.output_activation": _head,
    "train.loss": lambda m, o, v, vs, g: {"loss": v},
    "data.standardize": lambda m, o, v, vs, g: {"data_transform": standardize} if v else None,
    "optim.clip.kind": lambda m, o, v, vs, g: {
        "clip": tw_optim.clip.build(v, vs.get("optim.clip.threshold"))
    },
    "schedule.name": lambda m, o, v, vs, g: {
        # the peak is the optimizer's base lr, as in a config run (schedules.apply fills it)
        "schedule": tw_optim.schedules.build(v, lr_from_optimizer=True)
    },
    "schedule.plateau": lambda m, o, v, vs, g: {"plateau": tw_optim.schedules.Performance(**v)},
    "regularization.l2": lambda m, o, v, vs, g: None if v is None else {
        "penalty": tw_optim.penalties.Penalty(l1=vs.get("regularization.l1") or 0.0, l2=v)
    },
    "train.rollback_every": lambda m, o, v, vs, g: {"callbacks": [RollbackGuard(every=v)]},
    "train.early_stopping": lambda m, o, v, vs, g: {"callbacks": [_early_stopping(v)]},
}
"""Config field → the live action that realizes it: ``(model, optimizer, value, all
values, generator) -> Trainer kwargs | None``. Fields without an action (``optim.momentum``,
``model.out_features``, ``data.input_scale`` …) only matter when a config is rebuilt."""


def _early_stopping(settings: Mapping[str, Any]) -> EarlyStopping:
    """The Trainer callback of a ``train.early_stopping`` setting (val loss, min mode)."""
    return EarlyStopping(
        monitor=str(settings.get("monitor", "val_loss")),
        mode=str(settings.get("mode", "min")),
        patience=int(settings.get("patience", EARLY_STOPPING["patience"])),
        min_delta=float(settings.get("min_delta", 0.0)),
        restore_best=bool(settings.get("restore_best", True)),
    )


def _weaker(value: Any, cap: float) -> float | None:
    """A regularization strength ÷ REG_DOWN and at most ``cap`` (the usual strength), off
    (0) once that is negligible; None where it is unknown (live objects: the action divides
    what it finds)."""
    if value is None:
        return None
    v = min(float(value) / REG_DOWN, cap)
    return 0.0 if v < REG_OFF else v


def _new_activation(cur: Current) -> str:
    # sigmoid/tanh → ELU (non-saturating for z > 0, smooth); ReLU family → LeakyReLU.
    return "leaky_relu" if cur.activation == "relu" else "elu"


REPAIRS: dict[str, Repair] = {
    r.name: r
    for r in (
        Repair(
            "fix_output_head",
            "logits on the output, loss by the task (cross-entropy); a regression loss stays",
            # A distance loss (only valid on regression targets) is the user's choice, not the
            # fault: MAE stays MAE, so "after" is comparable with the run before.
            {"model.output_activation": None, "model.out_features": None,
             "train.loss": lambda c: (
                 c.settings["train.loss"] if c.settings.get("train.loss") in _KEPT_LOSSES
                 else "auto")},
            needed=lambda c: (
                c.settings["model.output_activation"] is not None
                or c.settings["model.out_features"] is not None
                or c.settings["train.loss"] not in ("auto", "cross_entropy", *_KEPT_LOSSES)
            ),
        ),
        Repair(
            "standardize_inputs",
            "standardize features with training statistics",
            {"data.standardize": True, "data.input_scale": 1.0},
            needed=lambda c: (
                not (c.settings["data.standardize"] and c.settings["data.input_scale"] == 1.0)
            ),
        ),
        Repair(
            "reinit_by_activation",
            "re-initialize by activation (Glorot/He/LeCun), hidden biases at zero",
            {"model.init": "auto", "model.bias_init": "zeros"},
            needed=lambda c: (
                c.settings["model.init"] != "auto" or c.settings["model.bias_init"] != "zeros"
            ),
        ),
        Repair(
            "swap_activation",
            "sigmoid/tanh → ELU, ReLU → LeakyReLU, with matching init",
            {"model.activation": _new_activation, "model.init": "auto"},
        ),
        Repair(
            "add_batch_norm",
            "batch normalization before each hidden activation",
            {"model.batch_norm": True},
            needed=lambda c: not c.settings["model.batch_norm"],
        ),
        Repair(
            "clip_gradients",
            f"clip the global gradient norm to {CLIP_NORM}",
            {"optim.clip.kind": "global_norm", "optim.clip.threshold": CLIP_NORM},
            needed=lambda c: c.settings["optim.clip.kind"] == "none",
        ),
        Repair(
            "lr_down",
            f"multiply the learning rate by {LR_DOWN}, at most the usual LR (3e-3 adaptive, 0.05 SGD)",
            # ×0.1, but at most the usual LR: from lr = 10 one decade still diverges.
            {"optim.lr": lambda c: _decimal(min(c.lr * LR_DOWN, c.usual_lr))},
        ),
        Repair(
            "lr_up",
            f"multiply the learning rate by {LR_UP:g}, at least the usual LR (3e-3 adaptive, 0.05 SGD)",
            # ×100, but at least the usual LR: from 1e-10 two decades are still nothing.
            {"optim.lr": lambda c: _decimal(max(c.lr * LR_UP, c.usual_lr))},
        ),
        Repair(
            "switch_optimizer",
            f"switch to trainwell's Adam (lr {ADAM_LR:g})",
            {"optim.name": "adam", "optim.lr": ADAM_LR, "optim.momentum": None, "optim.beta": None},
            needed=lambda c: c.settings["optim.name"] not in ("adam", "adamw", "nadam", "adamax"),
        ),
        Repair(
            "add_schedule",
            "a 1cycle schedule peaking at the current learning rate",
            {"schedule.name": "one_cycle", "schedule.params": {}},
            needed=lambda c: c.settings["schedule.name"] != "one_cycle",
        ),
        Repair(
            "add_plateau",
            f"halve the learning rate after {PLATEAU['patience']} epochs without progress",
            {"schedule.plateau": PLATEAU},
            # schedule.name = "performance" already is the plateau controller
            needed=lambda c: c.settings["schedule.plateau"] is None
            and c.settings["schedule.name"] != "performance",
            reads=("schedule.name",),
        ),
        Repair(
            "early_stopping",
            f"stop {EARLY_STOPPING['patience']} epochs after the best validation loss and "
            "keep the best weights",
            {"train.early_stopping": lambda c: dict(EARLY_STOPPING)},
            needed=lambda c: c.settings["train.early_stopping"] is None,
        ),
        Repair(
            "add_l2",
            f"L2 penalty λ = {L2:g}",
            {"regularization.l2": L2},
            needed=lambda c: c.settings["regularization.l2"] < L2,
        ),
        Repair(
            "add_dropout",
            f"dropout {DROPOUT} after hidden activations",
            {"model.dropout": DROPOUT},
            needed=lambda c: c.settings["model.dropout"] < DROPOUT,
        ),
        Repair(
            "reduce_regularization",
            f"dropout and L1/L2 penalties ÷{REG_DOWN:g}, at most dropout {DROPOUT}, "
            f"λ2 {L2:g}, λ1 {L1:g} (off below {REG_OFF:g})",
            {
                "model.dropout": lambda c: _weaker(c.settings.get("model.dropout"), DROPOUT),
                "regularization.l2": lambda c: _weaker(c.settings.get("regularization.l2"), L2),
                "regularization.l1": lambda c: _weaker(c.settings.get("regularization.l1"), L1),
            },
            needed=lambda c: any(
                c.settings[k] for k in ("model.dropout", "regularization.l2", "regularization.l1")
            ),
        ),
        Repair(
            "rollback_skip",
            f"keep the weights every {ROLLBACK_EVERY} steps and restore them after a "
            "non-finite loss (the Trainer already skips the non-finite step itself)",
            {"train.rollback_every": ROLLBACK_EVERY},
            needed=lambda c: c.settings["train.rollback_every"] is None,
        ),
    )
}
"""Registry: repair name → :class:`Repair`."""
