"""The optimizer registry: names → optimizer classes, and the one factory ``build``.

A config refers to an optimizer by name (``optim.name = "adam"``); :data:`OPTIMIZERS`
maps each name to a frozen :class:`OptimizerSpec`. Adding an optimizer is one new row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UserError
from .adagrad import AdaGrad
from .adam import Adam, AdaMax, AdamW, Nadam
from .rmsprop import RMSProp
from .sgd import SGD, Momentum, Nesterov

__all__ = ["OPTIMIZERS", "OptimizerSpec", "build", "hyperparameters"]

# Arguments of every optimizer class that are not hyperparameters.
_NOT_HYPER = ("self", "params")


@dataclass(frozen=True)
class OptimizerSpec:
    """A registry row: the name used in configs, the class, its defaults, a description.

    ``defaults`` are the hyperparameter defaults under the default ``"lecture"``
    convention (each convention has its own: see ``cls.DEFAULTS``); they document the
    row, ``build`` leaves unset hyperparameters to the class.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _signature_defaults(cls: type, convention: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    per_convention: dict[str, dict[str, Any]] = getattr(cls, "DEFAULTS", {})
    for name, p in inspect.signature(cls).parameters.items():
        if name in _NOT_HYPER or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = p.default
        if value is None and name in per_convention.get(convention, {}):
            value = per_convention[convention][name]
        out[name] = value
    if "convention" in out:
        out["convention"] = convention
    return out


_ROWS = [
    ("sgd", SGD, "plain gradient descent θ ← θ − η g"),
    ("momentum", Momentum, "momentum: m ← β m + η g; θ ← θ − m"),
    ("nesterov", Nesterov, "Nesterov accelerated gradient (look-ahead gradient)"),
    ("adagrad", AdaGrad, "AdaGrad: step scaled by 1/√(sum of squared gradients)"),
    ("rmsprop", RMSProp, "RMSProp: step scaled by 1/√(moving mean of g²)"),
    ("adam", Adam, "Adam: momentum + RMSProp with bias correction"),
    ("adamw", AdamW, "AdamW: Adam with decoupled weight decay"),
    ("nadam", Nadam, "Nadam: Adam with Nesterov momentum"),
    ("adamax", AdaMax, "AdaMax: Adam with the infinity norm"),
]

OPTIMIZERS: dict[str, OptimizerSpec] = {
    name: OptimizerSpec(name, cls, _signature_defaults(cls, "lecture"), text)
    for name, cls, text in _ROWS
}


def _spec(name: str) -> OptimizerSpec:
    spec = OPTIMIZERS.get(name)
    if spec is None:
        raise UserError(f"name: unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    return spec


def hyperparameters(name: str, convention: str = "lecture") -> dict[str, Any]:
    """The hyperparameters the optimizer ``name`` takes, with their defaults.

    Read from the class signature; ``None`` defaults are resolved for ``convention``.

    Args:
        name: a registry name, e.g. ``"adam"``.
        convention: whose defaults to report ("lecture", "torch", "keras").

    Returns:
        ``{hyperparameter: default}`` in signature order (includes ``convention`` and
        ``foreach``).

    Raises:
        UserError: unknown optimizer name.
    """
    return _signature_defaults(_spec(name).cls, convention)


def build(name: str, params: Any, **hyperparameters_: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` over ``params``.

    Args:
        name: a key of :data:`OPTIMIZERS`.
        params: tensors or param-group dicts, as for any ``torch.optim.Optimizer``.
        **hyperparameters_: keyword arguments of the class (unset ones keep the class'
            default for the chosen convention).

    Returns:
        The optimizer.

    Raises:
        UserError: unknown name ("name: ...") or an argument that is not a hyperparameter
            of this optimizer ("<argument>: not a hyperparameter of ...").
        ValueError: a value out of range, naming the argument ("lr: must be >= 0, got -1.0").
    """
    spec = _spec(name)
    known = _signature_defaults(spec.cls, "lecture")
    for key in hyperparameters_:
        if key not in known:
            raise UserError(
                f"{key}: not a hyperparameter of {name!r}; it takes {', '.join(known)}"
            )
    return spec.cls(params, **hyperparameters_)
