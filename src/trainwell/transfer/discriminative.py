"""Discriminative learning rates: one learning-rate factor per layer group.

Layers near the input learn general features and usually want smaller steps than the new
head when a model is fine-tuned. :func:`param_groups` splits a model's parameters into one
optimizer parameter group per layer and tags each with its factor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..errors import UserError
from .layers import named_layers

__all__ = ["param_groups", "layer_factors"]


def layer_factors(model: nn.Module, decay: float) -> list[float]:
    """Geometric factors, 1 for the last layer and ``decay`` less per layer below it.

    Formula: with ``L`` layers, ``factor_i = decay ** (L - 1 - i)`` for layer ``i``.

    Args:
        model: the model (its layers as in :func:`trainwell.transfer.named_layers`).
        decay: the ratio between neighbouring layers, ``0 < decay``.

    Returns:
        One factor per layer, input side first.

    Raises:
        UserError: ``decay`` is not a positive finite number.
    """
    _check_factor("decay", decay)
    n = len(named_layers(model))
    return [float(decay) ** (n - 1 - i) for i in range(n)]


def param_groups(
    model: nn.Module,
    factors: Sequence[float] | Mapping[str, float] | float,
    *,
    lr: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per layer, each scaled by its own factor.

    Contract: each group is ``{"params": [...], "name": layer, "lr_scale": factor}``;
    ``trainwell.optim.schedules.apply`` sets ``group["lr"] = lr_scale · schedule(step)``
    (the schedule taking ``base_lr`` when its own base lr is unset). With ``lr`` given, each
    group also gets ``"base_lr": lr`` (the rate the factor multiplies) and
    ``"lr": lr * factor`` (what an optimizer uses before, or without, ``apply``); without
    it both come from the optimizer's ``lr``. Every parameter of ``model`` is in exactly one group,
    frozen ones included (they are skipped by the optimizer while they have no gradient, so
    gradual unfreezing needs no new groups); parameters outside the layers go to a group
    named ``"rest"`` with factor 1.

    Args:
        model: the model.
        factors: a sequence with one factor per layer; a mapping from layer name to factor
            (unnamed layers get 1); or a float ``decay`` meaning :func:`layer_factors`.
        lr: the base learning rate, to write ``lr * factor`` into each group.

    Returns:
        The list of parameter groups to pass to an optimizer. Layers without parameters
        get no group.

    Raises:
        UserError: a factor that is not positive and finite, a sequence of the wrong length,
            or a mapping key that names no layer.
    """
    layers = named_layers(model)
    names = [n for n, _ in layers]
    if isinstance(factors, (int, float)) and not isinstance(factors, bool):
        per_layer = layer_factors(model, float(factors))
    elif isinstance(factors, Mapping):
        unknown = [k for k in factors if k not in names]
        if unknown:
            raise UserError(
                f"factors: no layer named {unknown[0]!r}; the model's layers are {names}"
            )
        per_layer = [float(factors.get(n, 1.0)) for n in names]
    elif isinstance(factors, Sequence):
        per_layer = [float(f) for f in factors]
        if len(per_layer) != len(layers):
            raise UserError(
                f"factors: got {len(per_layer)} factors for {len(layers)} layers {names}; "
                "give one factor per layer"
            )
    else:  # a bool is no decay, and anything else is not a factor
        raise UserError(f"factors: expected a float, a sequence or a mapping, got {factors!r}")
    for name, f in zip(names, per_layer):
        _check_factor(f"factors[{name}]", f)
    seen: set[int] = set()
    groups: list[dict[str, Any]] = []
    for (name, layer), f in zip(layers, per_layer):
        params = [p for p in layer.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append(_group(params, name, f, lr))
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append(_group(rest, "rest", 1.0, lr))
    return groups


def _group(params: list, name: str, factor: float, lr: float | None) -> dict[str, Any]:
    group: dict[str, Any] = {"params": params, "name": name, "lr_scale": factor}
    if lr is not None:  # base_lr: so apply does not read the already scaled lr as the base
        group["base_lr"] = lr
        group["lr"] = lr * factor
    return group


def _check_factor(what: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what}: expected a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what}: must be a positive finite number, got {value}")
