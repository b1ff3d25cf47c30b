"""Gradient clipping: by value, by global norm, by per-tensor norm, adaptive (AGC).

Each function clips the ``.grad`` of the given parameters in place and returns the global
L2 norm of the gradients BEFORE clipping (a float64 0-d tensor), so it can be logged at no
extra cost. Norms are computed in float64: a vanishing layer's gradient of ~1e-32 squares
to 1e-64, which underflows to 0 in float32.

A non-finite norm (inf/NaN gradients) is returned as is and the norm-based functions leave
such gradients unscaled — no NaN is manufactured from a finite gradient, and no sync with
the device is needed; the caller checks ``torch.isfinite(norm)`` and skips the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import UserError

__all__ = [
    "grad_norm",
    "by_value",
    "by_global_norm",
    "by_tensor_norm",
    "adaptive",
    "Clipper",
    "CLIP_KINDS",
    "build",
]

Params = Iterable[torch.Tensor] | torch.Tensor
ClipKind = Literal["none", "value", "global_norm", "tensor_norm", "adaptive"]
_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s guard against division by a zero norm


def _grads(params: Params) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def _norms64(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-tensor L2 norms in float64, one foreach call per (device, dtype) group."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, g in enumerate(grads):
        groups.setdefault((g.device, g.dtype), []).append(i)
    out: list[torch.Tensor] = [torch.empty(0)] * len(grads)
    for idx in groups.values():
        norms = torch._foreach_norm([grads[i] for i in idx], 2, dtype=torch.float64)
        for i, n in zip(idx, norms):
            out[i] = n
    return out


def _total(norms: list[torch.Tensor], like: list[torch.Tensor]) -> torch.Tensor:
    if not norms:
        return torch.zeros((), dtype=torch.float64)
    device = like[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


def grad_norm(params: Params) -> torch.Tensor:
    """Global L2 norm of the gradients, without clipping: ‖g‖ = √(Σ_tensors ‖g_i‖²).

    Computed in float64 so gradients of ~1e-32 do not underflow to 0.

    Returns:
        A float64 0-d tensor (0 when no parameter has a gradient).
    """
    grads = _grads(params)
    return _total(_norms64(grads), grads)


def by_value(params: Params, clip_value: float) -> torch.Tensor:
    """Clamp every gradient element to [−v, v] (same as ``torch.nn.utils.clip_grad_value_``).

    An infinite element is clamped to ±v, but the returned norm is still inf, so the caller
    sees it; NaN elements stay NaN.

    Returns:
        The global L2 norm before clipping (float64 0-d tensor).
    """
    grads = _grads(params)
    norm = _total(_norms64(grads), grads)
    if grads:
        torch._foreach_clamp_min_(grads, -clip_value)
        torch._foreach_clamp_max_(grads, clip_value)
    return norm


def _scale_(grads: list[torch.Tensor], coefs: list[torch.Tensor]) -> None:
    by_key: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
    for g, c in zip(grads, coefs):
        gs, cs = by_key.setdefault((g.device, g.dtype), ([], []))
        gs.append(g)
        cs.append(c.to(device=g.device, dtype=g.dtype))
    for gs, cs in by_key.values():
        torch._foreach_mul_(gs, cs)


def by_global_norm(params: Params, max_norm: float) -> torch.Tensor:
    """Rescale all gradients together so their global norm is at most ``max_norm``.

    g ← g · min(1, max_norm / (‖g‖ + 1e-6)) with ‖g‖ the one norm over all gradients —
    the formula of ``torch.nn.utils.clip_grad_norm_``. Left unscaled when ‖g‖ is not finite.

    Returns:
        The global L2 norm before clipping (float64 0-d tensor).
    """
    grads = _grads(params)
    norm = _total(_norms64(grads), grads)
    if grads:
        coef = torch.clamp(max_norm / (norm + _EPS), max=1.0)
        coef = torch.where(torch.isfinite(norm), coef, torch.ones_like(coef))
        _scale_(grads, [coef] * len(grads))
    return norm


def by_tensor_norm(params: Params, max_norm: float) -> torch.Tensor:
    """Rescale each gradient tensor separately to norm at most ``max_norm`` (Keras ``clipnorm``).

    g_i ← g_i · max_norm / max(‖g_i‖, max_norm), the formula of ``tf.clip_by_norm``; a
    tensor with a non-finite norm is left unscaled. Unlike global clipping this changes the
    direction of the overall gradient.

    Returns:
        The global L2 norm before clipping (float64 0-d tensor).
    """
    grads = _grads(params)
    norms = _norms64(grads)
    coefs = []
    for n in norms:
        c = max_norm / torch.clamp(n, min=max_norm)
        coefs.append(torch.where(torch.isfinite(n), c, torch.ones_like(c)))
    _scale_(grads, coefs)
    return _total(norms, grads)


def _unit_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per output unit (over all dims but the first) for ndim > 1, else whole tensor."""
    if x.ndim > 1:
        return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)
    return torch.linalg.vector_norm(x)


def adaptive(params: Params, clipping: float = 0.01, eps: float = 1e-3) -> torch.Tensor:
    """Adaptive gradient clipping (AGC, Brock et al. 2021, arXiv:2102.06171), unit-wise.

    For each unit i (an output row of a weight with ndim > 1, the whole tensor for a vector):
    if ‖G_i‖ / max(‖W_i‖, eps) > λ then G_i ← G_i · λ·max(‖W_i‖, eps) / ‖G_i‖. Units with a
    non-finite gradient norm are left unscaled. Unlike the paper, no layer (e.g. the final
    classifier) is exempt: pass only the parameters to clip.

    Args:
        params: parameters whose ``.grad`` is clipped (their values give ‖W_i‖).
        clipping: λ > 0, the largest gradient-to-weight norm ratio allowed.
        eps: floor of the weight norm, so zero-initialized units can still move.

    Returns:
        The global L2 norm before clipping (float64 0-d tensor).
    """
    if isinstance(params, torch.Tensor):
        params = [params]
    pairs = [(p, p.grad) for p in params if p.grad is not None]
    params = [p for p, _ in pairs]
    grads = [g for _, g in pairs]
    norm = _total(_norms64(grads), grads)
    with torch.no_grad():
        for p, g in zip(params, grads):
            w_norm = _unit_norm(p.detach()).clamp(min=eps)
            g_norm = _unit_norm(g)
            limit = clipping * w_norm
            clip = (g_norm > limit) & torch.isfinite(g_norm)
            g.mul_(torch.where(clip, limit / g_norm.clamp(min=1e-6), torch.ones_like(g_norm)))
    return norm


CLIP_KINDS = ("none", "value", "global_norm", "tensor_norm", "adaptive")


@dataclass(frozen=True)
class Clipper:
    """A configured clipping rule: ``Clipper(kind, threshold)(params) -> pre-clip norm``.

    Kinds: ``"value"`` (threshold = v of :func:`by_value`), ``"global_norm"`` and
    ``"tensor_norm"`` (threshold = max_norm), ``"adaptive"`` (threshold = λ of
    :func:`adaptive`), ``"none"`` (no clipping; still returns :func:`grad_norm`, which costs
    one norm pass — call it only when logging the norm).

    Raises:
        UserError: ``"kind: ..."`` or ``"threshold: ..."``.
    """

    kind: ClipKind = "none"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in CLIP_KINDS:
            raise UserError(
                f"kind: unknown clip kind {self.kind!r}; choose one of {list(CLIP_KINDS)}"
            )
        t = self.threshold
        if self.kind == "none":
            return
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
            raise UserError(
                f"threshold: must be a finite number > 0 for clip kind {self.kind!r}, got {t!r}"
            )

    def __call__(self, params: Params) -> torch.Tensor:
        t = float(self.threshold) if self.threshold is not None else 0.0
        if self.kind == "value":
            return by_value(params, t)
        if self.kind == "global_norm":
            return by_global_norm(params, t)
        if self.kind == "tensor_norm":
            return by_tensor_norm(params, t)
        if self.kind == "adaptive":
            return adaptive(params, t)
        return grad_norm(params)


def build(kind: ClipKind | None, threshold: float | None = None) -> Clipper:
    """The :class:`Clipper` for a config's ``optim.clip`` (``None`` means ``"none"``)."""
    return Clipper("none" if kind is None else kind, threshold)
