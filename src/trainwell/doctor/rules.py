"""Rules: pure functions from a run's :class:`Health` to :class:`Finding` objects.

This is the *decide* step. :func:`summarize` reduces the probe record to a few signals
(all windows, never one batch); :func:`diagnose_health` applies one rule per finding
kind. Every threshold is a named constant below, with its reasoning and the measurement
that set it (2-core CPU, trainwell's MLP/CNN, the configs in ``cases/``).

Guiding measurements (DESIGN.md, "Measured facts", and ``cases/``):
- healthy deep tanh nets (Glorot) show first/last gradient ratios ~1e-2…1e-1 and learn:
  gradient findings are raised only while the run also fails to learn;
- a 1-unit softmax head gives all-zero gradients with no dead ReLU: the head is checked
  first and suppresses ``dying_relu``;
- a 50-layer sigmoid/N(0,1) net has a mild gradient ratio (~0.06) but saturated units.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from .findings import Finding, Health

__all__ = ["THRESHOLDS", "diagnose_health", "summarize"]

# ---- learning status --------------------------------------------------------------
# A run "fails to learn" when its last accuracy has closed less than this share of the
# gap from chance to 100%. Healthy cases reach ≥ 0.7 of the gap in the diagnostic budget
# (digits 0.93+, mnist1d-4k 0.6+ after 3 epochs); broken ones stay ≤ 0.25.
FAIL_GAP_SHARE = 0.35
# …or its training loss ends above this share of the chance loss ln(C) (a net at chance
# sits at ~1.0; healthy diagnostic runs end ≤ 0.5).
FAIL_LOSS_SHARE = 0.8

# ---- gradients ----------------------------------------------------------------------
# First-layer / head gradient-norm ratio. Healthy deep tanh (Glorot, 20 layers): ~3e-2;
# sigmoid/Glorot 20+ layers: 1e-6 and below. 1e-3 splits them with margin both ways.
VANISHING_RATIO = 1e-3
# Absolute first-layer gradient norm below which it is vanishing whatever the ratio.
VANISHING_ABS = 1e-8
# First/last ratio above which gradients explode (deep tanh N(0,1): ratios in the
# hundreds; healthy nets 0.1–10).
EXPLODING_RATIO = 100.0
# A global gradient norm this large is exploding regardless of the ratio (healthy runs
# stay below ~50 with standardized inputs and cross-entropy).
EXPLODING_ABS = 1e4

# ---- units ----------------------------------------------------------------------------
# Share of ReLU units dead for a whole probe batch in the worst layer. He-initialized
# healthy nets: < 0.1; SGD with lr ≥ 1 or a negative bias shift: > 0.6.
DEAD_SHARE = 0.5
# Share of saturated sigmoid/tanh entries in the worst layer. Glorot tanh/sigmoid: < 0.1;
# N(0,1) sigmoid deep nets: > 0.6.
SATURATED_SHARE = 0.5
# Units identical to each other: ‖W − mean_row‖/‖W‖ below this (float32 noise ~1e-7).
SYMMETRY_SPREAD = 1e-5

# ---- learning rate ------------------------------------------------------------------
# ‖ΔW‖/‖W‖ per step of the head (whose gradients never vanish). The rule of thumb is
# ~1e-3; lr = 1e-10 measures ~1e-9 and lr = 1e-5 with SGD ~1e-6.
LR_LOW_UPDATE = 1e-5
# Relative drop of the training loss over the diagnostic budget under which it is "flat".
FLAT_LOSS_DROP = 0.05
# Loss oscillation: share of successive loss windows that go *up* by > 10%.
# Healthy runs: ≤ 0.25 (noise around the end); lr 1–10 or bs 1 + momentum: ≥ 0.4.
OSCILLATION_SHARE = 0.4
LOSS_WINDOWS = 10
# Median update ratio of hidden layers above which steps are far too large (healthy 1e-4…1e-2).
LR_HIGH_UPDATE = 0.1

# ---- inputs -------------------------------------------------------------------------
# Standardized features have std ≈ 1; raw pixels 0–255 or ×100 inputs ≥ 50.
INPUT_SCALE = 10.0

# ---- overfitting ----------------------------------------------------------------------
# Validation loss this much above its minimum, ≥ 2 epochs after it, with training loss
# still falling and a train/val accuracy gap of at least OVERFIT_GAP.
OVERFIT_RISE = 0.1
OVERFIT_GAP = 0.1

THRESHOLDS: dict[str, float] = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, int | float)}
"""All thresholds by name (for reports and tests)."""


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _median(values: list[float]) -> float | None:
    vals = [v for v in values if _finite(v)]
    return statistics.median(vals) if vals else None


def _layer_median(health: Health, layer: str, key: str, skip_first: bool = False) -> float | None:
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
    windows = [statistics.fmean(losses[i * n // LOSS_WINDOWS : (i + 1) * n // LOSS_WINDOWS])
               for i in range(LOSS_WINDOWS)] if n >= 2 * LOSS_WINDOWS else []
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
    per = {name: {
        "grad": _layer_median(health, name, "grad_norm"),
        "zero": _layer_median(health, name, "grad_zero_share"),
        "dead": _layer_median(health, name, "dead_share", skip_first=True),
        "saturated": _layer_median(health, name, "saturated_share"),
        "update": _layer_median(health, name, "update_ratio", skip_first=True),
    } for name in names}
    ratio = None
    if len(names) >= 2:
        g_first, g_head = per[names[0]]["grad"], per[names[-1]]["grad"]
        if g_first is not None and g_head:
            ratio = g_first / g_head
    first_probe = health.probes[0] if health.probes else {}
    spreads = {name: first_probe.get("layers", {}).get(name, {}).get("unit_spread") for name in names}
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
