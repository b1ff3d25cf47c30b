"""Loss functions by name, and the metrics that go with them.

- ``cross_entropy``: the model outputs logits ``(N, K)``; y holds class indices.
- ``nll``: as in torch, the model outputs log-probabilities (e.g. a ``LogSoftmax`` head);
  loss = −mean log p_y = ``F.nll_loss(out, y)``. Earlier trainwell versions took probabilities here.
- ``bce``: the model outputs one probability per sample ``(N, 1)``; y in {0, 1}.
- ``bce_logits``: one logit per sample ``(N, 1)``; y in {0, 1}; the sigmoid is inside the loss
  (``F.binary_cross_entropy_with_logits``), numerically safe for any logit.
- ``mse``: regression, mean of (ŷ − y)².
- ``mae``: regression, mean of |ŷ − y|.
- ``huber``: regression, mean of ½(ŷ − y)² where |ŷ − y| ≤ 1, |ŷ − y| − ½ elsewhere (δ = 1).
``auto`` picks ``cross_entropy`` for classification and ``mse`` for regression.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import UserError

__all__ = ["LOSSES", "REGRESSION_LOSSES", "resolve_loss", "batch_correct", "predict_classes"]

# bce's probabilities are clamped away from 0 before the log: log(0) would make one bad
# sample turn the whole loss into inf and hide every other signal.
_P_MIN = 1e-12


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = out.reshape(-1).clamp(_P_MIN, 1 - 1e-7)
    return F.binary_cross_entropy(p, y.reshape(-1).to(p.dtype))


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y.reshape(out.shape).to(out.dtype))


def _bce_logits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = out.reshape(-1)
    return F.binary_cross_entropy_with_logits(z, y.reshape(-1).to(z.dtype))


def _mae(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(out, y.reshape(out.shape).to(out.dtype))


def _huber(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(out, y.reshape(out.shape).to(out.dtype), delta=1.0)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "nll": F.nll_loss,  # log-probabilities in, as torch.nn.NLLLoss
    "bce": _bce,
    "bce_logits": _bce_logits,
    "mse": _mse,
    "mae": _mae,
    "huber": _huber,
}
REGRESSION_LOSSES = frozenset({"mse", "mae", "huber"})


def resolve_loss(name: str, task: str) -> tuple[str, Callable]:
    """Return ``(name, fn)`` for a loss name, resolving ``"auto"`` by the task."""
    if name == "auto":
        name = "cross_entropy" if task == "classification" else "mse"
    if name not in LOSSES:
        raise UserError(f"loss: unknown loss {name!r}; choose one of auto, {', '.join(LOSSES)}")
    if task == "classification" and name in REGRESSION_LOSSES:
        raise UserError(f"loss: {name!r} needs regression targets but the data have class "
                        "labels; use loss = \"auto\" (cross-entropy)")
    if task == "regression" and name not in REGRESSION_LOSSES:
        raise UserError(f"loss: {name!r} needs class labels but the data are a regression "
                        "task; use loss = \"mse\", \"mae\" or \"huber\"")
    return name, LOSSES[name]


def predict_classes(loss_name: str, out: torch.Tensor) -> torch.Tensor:
    """Predicted class indices of a batch: argmax, or p > 0.5 for a one-unit bce head."""
    if loss_name == "bce":
        return (out.reshape(-1) > 0.5).long()
    if loss_name == "bce_logits":
        return (out.reshape(-1) > 0).long()
    return out.argmax(dim=1)


def batch_correct(loss_name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions in a batch (a 0-dim tensor, no sync)."""
    return (predict_classes(loss_name, out) == y.reshape(-1)).sum()
