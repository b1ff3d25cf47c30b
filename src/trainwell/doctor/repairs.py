"""Repairs: named, ordered actions, each a Python action and a config patch.

This is the *act* step. A :class:`Repair` has

- ``patch(config) -> dict | None``: dotted-key changes to a :class:`~trainwell.config.Config`
  (``{"model.init": "auto"}``), or None when the repair does not apply to that config;
- ``apply(model, optimizer) -> dict``: the same change on live objects, in place; it
  returns keyword arguments the caller passes on (e.g. ``{"clip": ...}`` for the Trainer,
  ``{"optimizer": ...}`` for a new optimizer, ``{"callbacks": [...]}``).

Findings name their repairs in rank order (see :mod:`trainwell.doctor.rules`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..train.callbacks import Callback
from .probes import describe_layers

__all__ = ["REPAIRS", "Repair", "RollbackGuard"]

LR_DOWN = 0.1  # one decade: lr 1–10 → 0.1–1 still too high, so the loop may chain trials
LR_UP = 100.0  # flat loss at lr ≤ 1e-5 needs ≥ 2 decades to move within a short budget
USUAL_LR_ADAPTIVE = 3e-3
USUAL_LR_SGD = 0.05
CLIP_NORM = 1.0  # global-norm threshold: healthy standardized runs sit at 0.5–5
L2 = 1e-3  # λ2 for the overfitting repair
DROPOUT = 0.3
_SATURATING = ("sigmoid", "tanh")


@dataclass(frozen=True)
class Repair:
    """A named repair (see module docstring for ``patch`` and ``apply``)."""

    name: str
    description: str
    patch: Callable[[Any], dict[str, Any] | None]
    apply: Callable[[nn.Module, torch.optim.Optimizer], dict[str, Any]]


def _new_activation(current: str) -> str:
    # sigmoid/tanh → ELU (non-saturating for z > 0, smooth); ReLU family → LeakyReLU.
    return "leaky_relu" if current == "relu" else "elu"


def _swap_patch(c) -> dict | None:
    return {"model.activation": _new_activation(c.model.activation), "model.init": "auto"}


def _swap_apply(model: nn.Module, optimizer) -> dict:
    from ..nn import activation, apply_init

    swapped = None
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            kind = type(child).__name__.lower()
            if kind in ("relu", "sigmoid", "tanh") and child is not _head_act(model):
                swapped = _new_activation(kind)
                setattr(parent, name, activation(swapped))
    if swapped is not None:
        apply_init(model, "auto", activation=swapped)
    return {}


def _head_act(model: nn.Module) -> nn.Module | None:
    layers = describe_layers(model)
    return layers[-1].act_module if layers else None


def _reinit_patch(c) -> dict | None:
    return {"model.init": "auto"} if c.model.init != "auto" else None


def _reinit_apply(model: nn.Module, optimizer) -> dict:
    from ..nn import apply_init

    acts = [i.activation for i in describe_layers(model)[:-1] if i.activation]
    apply_init(model, "auto", activation=acts[0] if acts else "relu")
    return {}


def _bn_patch(c) -> dict | None:
    return None if c.model.batch_norm else {"model.batch_norm": True}


def _bn_apply(model: nn.Module, optimizer) -> dict:
    # Wrap each hidden Linear as Linear → BatchNorm1d; new parameters join the optimizer.
    new: list[nn.Parameter] = []
    for info in describe_layers(model)[:-1]:
        if isinstance(info.module, nn.Linear):
            bn = nn.BatchNorm1d(info.fan_out)
            new += list(bn.parameters())
            parent_name, _, attr = info.name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.Sequential(info.module, bn))
    if new:
        optimizer.add_param_group({"params": new})
    return {}


def _clip_patch(c) -> dict | None:
    if c.optim.clip.kind != "none":
        return None
    return {"optim.clip.kind": "global_norm", "optim.clip.threshold": CLIP_NORM}


def _clip_apply(model: nn.Module, optimizer) -> dict:
    from ..optim import clip

    return {"clip": clip.build("global_norm", CLIP_NORM)}


def _lr_apply(factor: float, bound: Callable[[float, float], float]):
    def apply(model: nn.Module, optimizer) -> dict:
        for group in optimizer.param_groups:
            # Adam-family groups carry betas; SGD-family groups do not.
            usual = USUAL_LR_ADAPTIVE if "betas" in group or "alpha" in group else USUAL_LR_SGD
            group["lr"] = bound(group["lr"] * factor, usual)
        return {}

    return apply


def _adam_patch(c) -> dict | None:
    if c.optim.name in ("adam", "adamw", "nadam", "adamax"):
        return None
    return {"optim.name": "adam", "optim.lr": 1e-3, "optim.momentum": None, "optim.beta": None}


def _adam_apply(model: nn.Module, optimizer) -> dict:
    return {"optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}


def _schedule_patch(c) -> dict | None:
    if c.schedule.name == "one_cycle":
        return (
            {"schedule.plateau": {"factor": 0.5, "patience": 2}}
            if c.schedule.plateau is None
            else None
        )
    return {"schedule.name": "one_cycle", "schedule.params": {}}


def _schedule_apply(model: nn.Module, optimizer) -> dict:
    from ..optim import schedules

    return {"plateau": schedules.Performance(factor=0.5, patience=2)}


def _l2_patch(c) -> dict | None:
    return {"regularization.l2": L2} if c.regularization.l2 < L2 else None


def _l2_apply(model: nn.Module, optimizer) -> dict:
    from ..optim import penalties

    return {"penalty": penalties.Penalty(l2=L2)}


def _dropout_patch(c) -> dict | None:
    return {"model.dropout": DROPOUT} if c.model.dropout < DROPOUT else None


def _dropout_apply(model: nn.Module, optimizer) -> dict:
    for info in describe_layers(model)[:-1]:
        if info.act_module is not None:
            for parent in model.modules():
                for name, child in list(parent.named_children()):
                    if child is info.act_module:
                        setattr(parent, name, nn.Sequential(child, nn.Dropout(DROPOUT)))
    return {}


def _head_patch(c) -> dict | None:
    bad = c.model.output_activation is not None or c.model.out_features is not None
    if not bad and c.train.loss in ("auto", "cross_entropy", "mse"):
        return None
    return {"model.output_activation": None, "model.out_features": None, "train.loss": "auto"}


def _head_apply(model: nn.Module, optimizer) -> dict:
    act = _head_act(model)
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if act is not None and child is act:
                setattr(parent, name, nn.Identity())
    return {"loss": "auto"}


def _standardize_patch(c) -> dict | None:
    if c.data.standardize and c.data.input_scale == 1.0:
        return None
    return {"data.standardize": True, "data.input_scale": 1.0}


def _standardize_apply(model: nn.Module, optimizer) -> dict:
    from ..data import standardize

    return {"data_transform": standardize}


class RollbackGuard(Callback):
    """Keep the last healthy weights; after a non-finite loss restore them and skip the batch.

    A Trainer callback: every ``every`` finite steps it copies
    the model and optimizer state; on a non-finite loss it loads the copy back.
    """

    def __init__(self, every: int = 10) -> None:
        self.every, self._state, self.rollbacks = every, None, 0

    def on_step_end(self, trainer, step: int, loss: torch.Tensor) -> None:
        """Save on healthy steps, restore after a non-finite one."""
        import copy

        if not bool(torch.isfinite(loss)):
            if self._state is not None:
                trainer.model.load_state_dict(self._state[0])
                trainer.optimizer.load_state_dict(self._state[1])
                self.rollbacks += 1
        elif step % self.every == 0:
            self._state = (
                copy.deepcopy(trainer.model.state_dict()),
                copy.deepcopy(trainer.optimizer.state_dict()),
            )


def _rollback_apply(model: nn.Module, optimizer) -> dict:
    return {"callbacks": [RollbackGuard()]}


_down_apply = _lr_apply(LR_DOWN, min)
_up_apply = _lr_apply(LR_UP, max)
_ADAPTIVE = ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad")


def _usual_lr(c) -> float:
    # The family's usual starting LR for standardized inputs: trainwell's default 3e-3 for
    # adaptive optimizers, 0.05 for the SGD family.
    return USUAL_LR_ADAPTIVE if c.optim.name in _ADAPTIVE else USUAL_LR_SGD


def _down(c) -> dict | None:
    # ×0.1, but at most the usual LR: from lr = 10 one decade still diverges.
    return {"optim.lr": min(c.optim.lr * LR_DOWN, _usual_lr(c))}


def _up(c) -> dict | None:
    # ×100, but at least the usual LR: from 1e-10 two decades are still nothing.
    return {"optim.lr": max(c.optim.lr * LR_UP, _usual_lr(c))}


REPAIRS: dict[str, Repair] = {
    r.name: r
    for r in (
        Repair(
            "fix_output_head",
            "logits on the output, loss by the task (cross-entropy)",
            _head_patch,
            _head_apply,
        ),
        Repair(
            "standardize_inputs",
            "standardize features with training statistics",
            _standardize_patch,
            _standardize_apply,
        ),
        Repair(
            "reinit_by_activation",
            "re-initialize by activation (Glorot/He/LeCun)",
            _reinit_patch,
            _reinit_apply,
        ),
        Repair(
            "swap_activation",
            "sigmoid/tanh → ELU, ReLU → LeakyReLU, with matching init",
            _swap_patch,
            _swap_apply,
        ),
        Repair(
            "add_batch_norm",
            "batch normalization before each hidden activation",
            _bn_patch,
            _bn_apply,
        ),
        Repair(
            "clip_gradients",
            f"clip the global gradient norm to {CLIP_NORM}",
            _clip_patch,
            _clip_apply,
        ),
        Repair(
            "lr_down",
            f"multiply the learning rate by {LR_DOWN}, at most the usual LR (3e-3 adaptive, 0.05 SGD)",
            _down,
            _down_apply,
        ),
        Repair(
            "lr_up",
            f"multiply the learning rate by {LR_UP:g}, at least the usual LR (3e-3 adaptive, 0.05 SGD)",
            _up,
            _up_apply,
        ),
        Repair("switch_optimizer", "switch to Adam (lr 1e-3)", _adam_patch, _adam_apply),
        Repair(
            "add_schedule",
            "a 1cycle schedule, or the performance controller",
            _schedule_patch,
            _schedule_apply,
        ),
        Repair("add_l2", f"L2 penalty λ = {L2:g}", _l2_patch, _l2_apply),
        Repair(
            "add_dropout",
            f"dropout {DROPOUT} after hidden activations",
            _dropout_patch,
            _dropout_apply,
        ),
        Repair(
            "rollback_skip",
            "restore the last healthy weights after a non-finite step "
            "(Python only; the Trainer already skips the batch)",
            lambda c: None,
            _rollback_apply,
        ),
    )
}
"""Registry: repair name → :class:`Repair`."""
