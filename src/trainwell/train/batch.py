"""What the Trainer reads off a batch: inputs, targets, and the task they imply.

A batch is an ``(x, y)`` tuple (or list), a dict with ``"x"``/``"y"`` keys, or anything a
user's ``forward(model, batch)`` and ``loss_fn(outputs, batch)`` understand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["default_forward", "infer_task", "map_inputs", "targets"]


def targets(batch: Any) -> Any:
    """The targets of a default batch: ``batch[1]`` of a tuple, ``batch["y"]`` of a dict."""
    if isinstance(batch, dict):
        return batch.get("y")
    if isinstance(batch, (tuple, list)) and len(batch) > 1:
        return batch[1]
    return None


def default_forward(model: torch.nn.Module, batch: Any) -> Any:
    """``model(x)`` with x = ``batch[0]`` of a tuple or ``batch["x"]`` of a dict."""
    if isinstance(batch, dict):
        return model(batch["x"])
    return model(batch[0] if isinstance(batch, (tuple, list)) else batch)


def infer_task(loss_name: str, y: Any) -> str:
    """``"classification"`` or ``"regression"``: by the loss's name, else by y's dtype."""
    if loss_name in ("cross_entropy", "nll", "bce"):
        return "classification"
    if loss_name == "mse" or (isinstance(y, torch.Tensor) and y.is_floating_point()):
        return "regression"
    return "classification"


def map_inputs(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``batch`` with its inputs (``batch[0]``, ``batch["x"]`` or the tensor) replaced by ``fn``'s.

    The Trainer's augmentation uses it; the batch passed in is left unchanged.
    """
    if isinstance(batch, dict):
        return {**batch, "x": fn(batch["x"])}
    if isinstance(batch, (tuple, list)):
        return type(batch)([fn(batch[0]), *batch[1:]])
    return fn(batch)
