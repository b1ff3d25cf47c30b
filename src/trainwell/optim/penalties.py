"""L1 and L2 weight penalties, added to the loss (and logged apart from it by the Trainer).

Penalties apply to weights only: biases and the parameters of normalization layers are
left out unless asked for, since shrinking them does not reduce a network's capacity and
can hurt (a batch-norm scale pushed to 0 switches its units off).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError

__all__ = ["NORM_LAYERS", "weight_parameters", "Penalty"]

# Module types whose parameters are scales/shifts of a normalization, not weights.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _is_bias(name: str) -> bool:
    # "bias", and the biases of recurrent/attention layers ("bias_ih_l0", "in_proj_bias").
    return "bias" in name


def weight_parameters(
    model: nn.Module, include_bias: bool = False, include_norm: bool = False
) -> list[nn.Parameter]:
    """The parameters to penalize: weights of Linear/Conv/etc. layers.

    A parameter is a bias when its name contains ``"bias"``; a norm parameter when it belongs
    to a module of :data:`NORM_LAYERS`. Shared parameters appear once; frozen parameters
    (``requires_grad=False``) are left out.

    Args:
        model: the network.
        include_bias: also penalize biases.
        include_norm: also penalize normalization layers' parameters.

    Returns:
        The parameters, in ``model.named_modules()`` order.
    """
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            if (is_norm and not include_norm) or (
                _is_bias(name) and not include_bias and not is_norm
            ):
                continue
            seen.add(id(p))
            out.append(p)
    return out


def _check(field: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise UserError(f"{field}: must be a finite number >= 0, got {v!r}")
    return float(v)


class Penalty:
    """Weight penalty P(θ) = l1 · Σ|w| + l2 · Σ w² over :func:`weight_parameters`.

    The L2 term follows Keras' convention, λ·Σw² (gradient 2λw), not λ/2·Σw²; with plain SGD
    it equals torch's ``weight_decay = 2·l2``. Computed with one ``torch._foreach_norm`` call
    per term (differentiable), no concatenation of the weights.

    Args:
        l1: L1 coefficient (>= 0).
        l2: L2 coefficient (>= 0).
        include_bias: penalize biases too.
        include_norm: penalize normalization layers' parameters too.

    Raises:
        UserError: ``"l1: ..."`` (or ``l2``) for a negative or non-finite coefficient.
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        include_bias: bool = False,
        include_norm: bool = False,
    ) -> None:
        self.l1 = _check("l1", l1)
        self.l2 = _check("l2", l2)
        self.include_bias = include_bias
        self.include_norm = include_norm

    def __repr__(self) -> str:
        return (
            f"Penalty(l1={self.l1}, l2={self.l2}, include_bias={self.include_bias}, "
            f"include_norm={self.include_norm})"
        )

    @property
    def active(self) -> bool:
        """Whether the penalty is not identically zero."""
        return self.l1 > 0 or self.l2 > 0

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """P(θ) for ``model`` as a 0-d tensor (on the first weight's device and dtype)."""
        # list[Tensor], not list[Parameter]: torch's stubs type _foreach_norm's argument as an
        # (invariant) list of Tensor
        ws: list[torch.Tensor] = list(weight_parameters(model, self.include_bias, self.include_norm))
        if not ws or not self.active:
            p = next(model.parameters(), None)
            return torch.zeros((), device=p.device if p is not None else None)
        total = torch.zeros((), device=ws[0].device, dtype=ws[0].dtype)
        if self.l1 > 0:
            total = total + self.l1 * torch.stack(torch._foreach_norm(ws, 1)).sum()
        if self.l2 > 0:
            total = total + self.l2 * torch.stack(torch._foreach_norm(ws, 2)).square().sum()
        return total
