"""Signals: reduce a run's :class:`Health` record to the few numbers the rules compare.

This is the first half of the *decide* step (:mod:`trainwell.doctor.rules` is the second).
Every signal is a median or a mean over windows of the run, never one batch, so a single
noisy step cannot raise a finding. :mod:`trainwell.doctor.rules` re-exports
:func:`summarize`.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from .findings import Health
from .thresholds import FAIL_GAP_SHARE, FAIL_LOSS_SHARE, LOSS_WINDOWS

__all__ = ["summarize"]


def _finite(v: Any) -> bool:
    """True for a finite int/float (bools and None are not numbers here)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _median(values: list[float]) -> float | None:
    """Median of the finite entries of ``values`` (None when there are none)."""
    vals = [v for v in values if _finite(v)]
    return statistics.median(vals) if vals else None


def _layer_median(health: Health, layer: str, key: str, skip_first: bool = False) -> float | None:
    """Median of one layer's probe ``key`` over the run (``skip_first``: drop step 0)."""
    series = health.series(layer, key)
    if skip_first and len(series) > 1:
        series = series[1:]
    return _median([v for _, v in series])


def summarize(health: Health) -> dict[str, Any]:
    """Reduce a run's health record to the signals the rules use.

    Returns:
        A dict with ``chance_loss`` (ln C), ``chance_acc`` (1/C), ``acc`` (last val, else
        train accuracy), ``loss_start``/``loss_end`` (median of the first/last 20% of
        finite step losses), ``loss_drop`` (relative), ``up_share`` (share of loss windows
        rising > 10%), ``non_finite_steps``, ``failing`` (bool), per-layer medians
        (``grad``, ``dead``, ``saturated``, ``update``) and ``grad_ratio`` (first/head).
    """
    ctx = health.context
    classes = ctx.get("num_classes") or ctx.get("out_features") or 2
    classes = max(int(classes), 2)
    loss_name = ctx.get("loss") or "cross_entropy"
    chance_loss = math.log(2) if loss_name == "bce" else math.log(classes)
    chance_acc = 1.0 / classes
    losses = [v for v in health.losses if _finite(v)]
    non_finite = sum(1 for v in health.losses if not _finite(v))
    non_finite += sum(1 for p in health.probes if p.get("grads_finite") is False)
    non_finite = max(non_finite, int(ctx.get("skipped_steps") or 0))
    n = len(losses)
    k = max(1, n // 5)
    loss_start = _median(losses[:k]) if losses else None
    loss_end = _median(losses[-k:]) if losses else None
    drop = (loss_start - loss_end) / abs(loss_start) if loss_start else 0.0
    windows = (
        [
            statistics.fmean(losses[i * n // LOSS_WINDOWS : (i + 1) * n // LOSS_WINDOWS])
            for i in range(LOSS_WINDOWS)
        ]
        if n >= 2 * LOSS_WINDOWS
        else []
    )
    ups = sum(1 for a, b in zip(windows, windows[1:]) if b > a * 1.1 + 1e-12)
    up_share = ups / (len(windows) - 1) if len(windows) > 1 else 0.0
    last = health.epochs[-1] if health.epochs else {}
    acc = last.get("val_accuracy", last.get("train_accuracy"))
    failing = False
    if _finite(acc):
        failing = acc < chance_acc + FAIL_GAP_SHARE * (1 - chance_acc)
    if _finite(loss_end) and loss_end > FAIL_LOSS_SHARE * chance_loss:
        failing = True
    if not losses:
        failing = True
    names = health.layer_names
    per = {
        name: {
            "grad": _layer_median(health, name, "grad_norm"),
            "zero": _layer_median(health, name, "grad_zero_share"),
            "dead": _layer_median(health, name, "dead_share", skip_first=True),
            "saturated": _layer_median(health, name, "saturated_share"),
            "update": _layer_median(health, name, "update_ratio", skip_first=True),
        }
        for name in names
    }
    ratio = None
    if len(names) >= 2:
        g_first, g_head = per[names[0]]["grad"], per[names[-1]]["grad"]
        if g_first is not None and g_head:
            ratio = g_first / g_head
    first_probe = health.probes[0] if health.probes else {}
    spreads = {
        name: first_probe.get("layers", {}).get(name, {}).get("unit_spread") for name in names
    }
    inp = first_probe.get("input") or {}
    return {
        "chance_loss": chance_loss, "chance_acc": chance_acc, "acc": acc,
        "loss_start": loss_start, "loss_end": loss_end, "loss_drop": drop,
        "up_share": up_share, "non_finite_steps": non_finite, "failing": failing,
        "layers": per, "grad_ratio": ratio, "spread": spreads,
        "input_scale": max(inp.get("std", 0.0) or 0.0, inp.get("abs_mean", 0.0) or 0.0),
        "global_grad": _median([p.get("grad_norm") for p in health.probes]),
        "steps": len(health.losses),
    }  # fmt: skip


def _ratios(health: Health) -> list[float]:
    """First-layer / head gradient-norm ratio at each probe step (finite, positive head)."""
    names = health.layer_names
    if len(names) < 2:
        return []
    out = []
    for rec in health.probes:
        lay = rec.get("layers", {})
        g0 = lay.get(names[0], {}).get("grad_norm")
        gh = lay.get(names[-1], {}).get("grad_norm")
        if _finite(g0) and _finite(gh) and gh > 0:
            out.append(g0 / gh)
    return out
