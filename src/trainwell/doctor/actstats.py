"""Activation statistics from tensors, and the activation inferred from what a layer saw.

A probe sees a layer's pre-activation z (its output) and the post-activation a (the input
of the next weighted layer, or the model's output after the head). :func:`infer_activation`
names the function between them — by matching a = f(z) elementwise when the shapes agree,
else by the values' range — so activations written as ``F.relu``/``torch.sigmoid`` in
``forward`` or as custom modules get the same dead-unit and saturation statistics as
``nn.ReLU``/``nn.Sigmoid`` modules (:func:`activation_stats`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "HIST_BINS",
    "SATURATION_EPS",
    "SATURATION_Z",
    "activation_stats",
    "infer_activation",
    "infer_head",
]

HIST_BINS = 24  # bins of the activation histograms kept for the report
HIST_SAMPLE = 4096  # values per histogram (a strided sample of the batch's activations)
SATURATION_Z = 5.0  # |z| ≥ 5: σ'(z) ≤ 0.0066, tanh'(z) ≤ 1.8e-4
SATURATION_EPS = 0.01  # output within 0.01 of an asymptote counts as saturated
MATCH_SHARE = 0.99  # a = f(z) on this share of entries names f (dropout, NaN may spoil a few)
ZERO_SHARE = 0.01  # exact zeros on this share of a non-negative output mark the ReLU family


def _safe_moments(v: torch.Tensor, lo_hi: tuple[float, float] | None = None
                  ) -> tuple[float, float]:
    """Mean and std of finite values at any magnitude (float64, pre-scaled by max|v|).

    Values near 1e30 square past float32's range and 1e200 past float64's: dividing by the
    largest magnitude first keeps every square ≤ 1. ``lo_hi``: ``v``'s (min, max) if known.
    """
    m = float(v.abs().max()) if lo_hi is None else max(abs(lo_hi[0]), abs(lo_hi[1]))
    if m == 0.0:
        return 0.0, 0.0
    u = v.to(torch.float64) / m
    return m * float(u.mean()), (m * float(u.std()) if u.numel() > 1 else 0.0)


def _histogram(v: torch.Tensor, lo_hi: tuple[float, float] | None = None
               ) -> tuple[list[int], list[float]]:
    """24-bin histogram of finite values over their range, safe at any magnitude.

    A collapsed range (all values equal, e.g. a dead head at 1e12) puts everything in the
    first bin: ``lo + 1e-6`` would change nothing above ~1e10 and divide by zero.
    ``lo_hi``: ``v``'s (min, max) if known.
    """
    lo, hi = (float(v.min()), float(v.max())) if lo_hi is None else lo_hi
    # A strided sample of ≤ 4096 values is plenty for 24 bins and 10× cheaper.
    sample = v.flatten()[:: max(1, v.numel() // HIST_SAMPLE)].to(torch.float64)
    # Halves first: hi − lo itself can overflow float64 for values near ±1e308.
    half_span = hi / 2 - lo / 2
    if half_span > 0 and math.isfinite(half_span):
        pos = (sample / 2 - lo / 2) / half_span * HIST_BINS
        idx = pos.nan_to_num(0.0).floor().clamp_(0, HIST_BINS - 1).long()
    else:
        idx = torch.zeros(sample.numel(), dtype=torch.long)
    return torch.bincount(idx, minlength=HIST_BINS).tolist(), [lo, hi]


def activation_stats(kind: str | None, inputs: tuple, y: torch.Tensor) -> dict[str, Any]:
    """Mean, std, histogram; dead share (``relu``) or saturated share (``sigmoid``/``tanh``).

    Args:
        kind: the activation's name (None: no dead/saturation statistic).
        inputs: ``(z,)`` the pre-activation, when known (saturation also counts |z| ≥ 5).
        y: the post-activation, ``(batch, units, …)``.

    Returns:
        A JSON-ready dict; a unit is dead when it is exactly 0 for every sample and position.
    """
    # One pass for the range: a finite min and max mean every value is finite (NaN and ±inf
    # would show in them), and they give the histogram's range and max|y| for the moments.
    lo_hi = None
    if y.numel() and y.is_floating_point():
        lo, hi = (float(t) for t in torch.aminmax(y))
        if math.isfinite(lo) and math.isfinite(hi):
            lo_hi = (lo, hi)
    if lo_hi is not None:
        yf = y
    else:
        finite = torch.isfinite(y)
        yf = y[finite] if not bool(finite.all()) else y
    mean, std = _safe_moments(yf, lo_hi) if yf.numel() else (math.nan, 0.0)
    st: dict[str, Any] = {
        "act_mean": mean,
        "act_std": std,
        "dead_share": None,
        "saturated_share": None,
    }
    if yf.numel():
        st["hist"], st["hist_range"] = _histogram(yf, lo_hi)
    if y.dim() >= 2 and y.shape[0] > 0:
        if kind == "relu":
            # A unit (feature, or channel of a conv map) is dead when it is 0 for every
            # sample and position of the batch.
            dims = [d for d in range(y.dim()) if d != 1]
            alive = (
                (y != 0).any(dim=dims[0]) if len(dims) == 1 else (y != 0).flatten(2).any(2).any(0)
            )
            st["dead_share"] = float(1.0 - alive.to(torch.float64).mean())
        elif kind in ("sigmoid", "tanh"):
            z = inputs[0].detach() if inputs and torch.is_tensor(inputs[0]) else None
            if kind == "sigmoid":
                near = torch.minimum(y, 1.0 - y) <= SATURATION_EPS
            else:
                near = (1.0 - y.abs()) <= SATURATION_EPS
            if z is not None and z.shape == y.shape:
                near = near | (z.abs() >= SATURATION_Z)
            st["saturated_share"] = float(near.to(torch.float64).mean())
    return st


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


# ReLU before identity: a layer whose outputs are all positive fits both, and a dead share
# of 0 is the truth either way.
_HIDDEN: tuple[tuple[str | None, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    ("relu", torch.relu),
    (None, _identity),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
)
# Identity first at the head: all-positive logits must not read as a ReLU output.
_HEAD: tuple[tuple[str | None, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    (None, _identity),
    ("relu", torch.relu),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
    ("softmax", lambda z: torch.softmax(z, dim=-1)),
    ("log_softmax", lambda z: torch.log_softmax(z, dim=-1)),
)


def _match(
    z: torch.Tensor, a: torch.Tensor, table: tuple[tuple[str | None, Callable], ...]
) -> tuple[bool, str | None]:
    """(found, name) of the first f with a = f(z) on ≥ MATCH_SHARE of the finite entries."""
    if z.numel() != a.numel() or z.numel() == 0:
        return False, None
    z = z.detach().reshape(a.shape).to(torch.float64)
    a = a.detach().to(torch.float64)
    ok = torch.isfinite(a) & torch.isfinite(z)
    n_ok = int(ok.sum())
    if n_ok == 0:
        return False, None
    # Every ``stride``-th row first (rows whole: softmax runs along the last axis): more
    # misses there than the whole tensor may have rules a candidate out for certain, so the
    # wrong candidates before the right one (relu and identity before sigmoid) cost a
    # fraction of a full comparison. The decision is the full comparison's either way.
    stride = max(1, a.shape[0] // 16) if a.dim() >= 2 else 1
    sample = (z[::stride], a[::stride], ok[::stride]) if stride > 1 else None
    for name, f in table:
        if sample is not None:
            zs, as_, oks = sample
            fzs = f(zs)
            misses = int((oks & ~((as_ - fzs).abs() <= 1e-4 * (1.0 + fzs.abs()))).sum())
            if n_ok - misses < MATCH_SHARE * n_ok - 1:
                continue  # even with every other entry close it stays below MATCH_SHARE
        fz = f(z)
        close = (a - fz).abs() <= 1e-4 * (1.0 + fz.abs())
        if float(close[ok].to(torch.float64).mean()) >= MATCH_SHARE:
            return True, name
    return False, None


def _by_range(a: torch.Tensor) -> str | None:
    """Name a bounded activation from its outputs alone (BatchNorm or pooling in between)."""
    a = a.detach()
    a = a[torch.isfinite(a)]
    if a.numel() == 0:
        return None
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and float((a == 0).to(torch.float64).mean()) >= ZERO_SHARE:
        return "relu"
    if lo >= 0.0 and hi <= 1.0:
        return "sigmoid"
    if lo >= -1.0 and hi <= 1.0:
        return "tanh"
    return None


def infer_activation(z: torch.Tensor | None, a: torch.Tensor) -> str | None:
    """The activation between a layer's output ``z`` and what the next layer receives ``a``.

    ``a = f(z)`` elementwise for f in identity, relu, sigmoid, tanh names f (identity gives
    None); otherwise (BatchNorm, pooling, a reshape in between) the range of ``a`` does:
    non-negative with exact zeros → ``"relu"``; within [0, 1] → ``"sigmoid"``; within
    [−1, 1] → ``"tanh"``; else None.
    """
    if z is not None:
        found, name = _match(z, a, _HIDDEN)
        if found:
            return name
    return _by_range(a)


def infer_head(z: torch.Tensor, out: torch.Tensor) -> str | None:
    """The output activation between the head layer's output ``z`` and the model's output.

    Elementwise match first (identity → None, relu, sigmoid, tanh, softmax, log_softmax over
    the last axis); otherwise rows in [0, 1] summing to 1 → ``"softmax"``, all in [0, 1] →
    ``"sigmoid"``, non-negative with exact zeros → ``"relu"``; else None (logits).
    """
    found, name = _match(z, out, _HEAD)
    if found:
        return name
    o = out.detach().to(torch.float64)
    if o.numel() == 0 or not bool(torch.isfinite(o).all()):
        return None
    lo, hi = float(o.min()), float(o.max())
    if o.dim() >= 2 and lo >= 0.0 and hi <= 1.0:
        if bool(torch.allclose(o.sum(-1), torch.ones_like(o.sum(-1)), atol=1e-4)):
            return "softmax"
    if lo >= 0.0 and hi <= 1.0:
        return "sigmoid"
    if lo >= 0.0 and float((o == 0).to(torch.float64).mean()) >= ZERO_SHARE:
        return "relu"
    return None
