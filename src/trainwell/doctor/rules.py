"""Rules: pure functions from a run's :class:`Health` to :class:`Finding` objects.

This is the *decide* step. :func:`summarize` (in :mod:`trainwell.doctor.signals`, re-exported
here) reduces the probe record to a few signals (all windows, never one batch);
:func:`diagnose_health` applies one rule per finding kind. Every threshold is a named constant in :mod:`trainwell.doctor.thresholds`, with its
reasoning and the measurement that set it (2-core CPU, trainwell's MLP/CNN, the configs in
``cases/``); they are re-exported here.

Guiding measurements (DESIGN.md, "Measured facts", and ``cases/``):
- healthy deep tanh nets (Glorot) show first/last gradient ratios ~1e-2…1e-1 and learn:
  gradient findings are raised only while the run also fails to learn;
- a 1-unit softmax head gives all-zero gradients with no dead ReLU: the head is checked
  first and suppresses ``dying_relu``;
- a 50-layer sigmoid/N(0,1) net has a mild gradient ratio (~0.06) but saturated units.
"""

from __future__ import annotations

from typing import Any

from .findings import Finding, Health
from .signals import _finite, _ratios, summarize  # summarize re-exported
from .thresholds import (  # re-exported: the numbers live in thresholds.py
    DEAD_SHARE,
    EXPLODING_ABS,
    EXPLODING_RATIO,
    FAIL_GAP_SHARE,  # noqa: F401 (re-export; used in signals.py)
    FAIL_LOSS_SHARE,  # noqa: F401 (re-export; used in signals.py)
    FLAT_LOSS_DROP,
    INPUT_SCALE,
    LOSS_WINDOWS,  # noqa: F401 (re-export; used in signals.py)
    LR_HIGH_UPDATE,
    LR_LOW_UPDATE,
    LR_PEAK_UPDATE,
    OSCILLATION_SHARE,
    OVERFIT_GAP,
    OVERFIT_RISE,
    SATURATED_SHARE,
    SYMMETRY_SPREAD,
    THRESHOLDS,
    VANISHING_ABS,
    VANISHING_RATIO,
)

__all__ = ["THRESHOLDS", "diagnose_health", "summarize"]


def _fmt(v: Any) -> Any:
    return float(f"{v:.4g}") if _finite(v) else v


def diagnose_health(health: Health) -> list[Finding]:
    """Apply every rule to a run's health record.

    Rules (thresholds in :data:`THRESHOLDS`), each a plain test over windows:

    - ``non_finite``: any non-finite loss/gradient, or a step the Trainer skipped.
    - ``bad_output_head``: a ReLU output, a 1-unit softmax, a probability loss without a
      probability head, fewer outputs than classes (checked before ``dying_relu``).
    - ``symmetric_init``: a hidden layer whose units are identical at the start.
    - ``unnormalized_inputs``: first-layer input std or mean |x| above ``INPUT_SCALE``.
    - while failing to learn: ``exploding_gradients`` (first/head ratio or global norm),
      ``lr_too_high`` (loss up or oscillating, huge updates), ``saturation``,
      ``vanishing_gradients`` (first/head ratio or absolute first norm), ``dying_relu``.
    - ``lr_too_low``: flat loss or failing, with head updates ‖ΔW‖/‖W‖ < ``LR_LOW_UPDATE``.
    - ``overfitting``: validation loss rising while training loss falls.

    Args:
        health: the record of one run (from the callback, :func:`watch` or a file).

    Returns:
        The findings, in the order of :data:`~trainwell.doctor.findings.KINDS`.
    """
    s = summarize(health)
    ctx, names, per = health.context, health.layer_names, s["layers"]
    found: dict[str, Finding] = {}
    base = {
        "accuracy": _fmt(s["acc"]),
        "chance_accuracy": _fmt(s["chance_acc"]),
        "loss_start": _fmt(s["loss_start"]),
        "loss_end": _fmt(s["loss_end"]),
    }

    def add(kind: str, layers: list[str], evidence: dict, text: str, repairs: tuple) -> None:
        found[kind] = Finding(kind, tuple(layers), {**evidence, **base}, text, repairs)

    if s["non_finite_steps"] > 0:
        bad = [
            n for n in names if any(not _finite(v) for _, v in _raw_series(health, n, "grad_norm"))
        ]
        first = next((i for i, v in enumerate(health.losses) if not _finite(v)), None)
        add(
            "non_finite",
            bad,
            {"non_finite_steps": s["non_finite_steps"], "first_step": first},
            "the loss or the gradients became inf/NaN: the steps are far too large or the "
            "numbers overflow",
            ("lr_down", "clip_gradients", "rollback_skip"),
        )
    head_problem = _head_problem(ctx, s)
    if head_problem:
        head = names[-1] if names else "head"
        zero = per.get(head, {}).get("zero") if names else None
        add(
            "bad_output_head",
            [head],
            {
                "output_activation": ctx.get("output_activation"),
                "loss": ctx.get("loss"),
                "out_features": ctx.get("out_features"),
                "num_classes": ctx.get("num_classes"),
                "head_zero_grad_share": _fmt(zero),
            },
            head_problem,
            ("fix_output_head",),
        )
    hidden = names[:-1]
    sym = [
        n
        for n in hidden
        if _finite(s["spread"].get(n))
        and s["spread"][n] < SYMMETRY_SPREAD
        and _fan_out(health, n) > 1
    ]
    if sym:
        add(
            "symmetric_init",
            sym,
            {"unit_spread": {n: _fmt(s["spread"][n]) for n in sym}},
            "all units of a layer start identical (e.g. zero or constant init), so they get "
            "the same gradient and stay identical: the layer acts like one unit",
            ("reinit_by_activation",),
        )
    if s["input_scale"] > INPUT_SCALE:
        add(
            "unnormalized_inputs",
            names[:1],
            {"input_scale": _fmt(s["input_scale"])},
            "the input features are far from unit scale, so the first layer's outputs and "
            "gradients are huge and one learning rate cannot suit every layer",
            ("standardize_inputs", "add_batch_norm", "lr_down"),
        )
    failing = s["failing"]
    ratios = _ratios(health)
    max_ratio = max(ratios) if ratios else None
    ratio = s["grad_ratio"]
    head_upd = per[names[-1]]["update"] if names else None
    head_grad = per[names[-1]]["grad"] if names else None
    peak = _peak_update(health)
    # Tiny updates with healthy head gradients (dead or zero gradients are other findings).
    low_lr = (
        _finite(head_upd)
        and head_upd < LR_LOW_UPDATE
        and s["non_finite_steps"] == 0
        and _finite(head_grad)
        and head_grad > VANISHING_ABS
        and not (_finite(peak) and peak > LR_PEAK_UPDATE)
    )
    if failing and (
        (_finite(max_ratio) and max_ratio > EXPLODING_RATIO)
        or (_finite(s["global_grad"]) and s["global_grad"] > EXPLODING_ABS)
    ):
        add(
            "exploding_gradients",
            names[:1],
            {
                "max_grad_ratio_first_to_head": _fmt(max_ratio),
                "global_grad_norm_median": _fmt(s["global_grad"]),
            },
            "gradients grow layer by layer towards the input, so the early layers take huge steps",
            ("clip_gradients", "reinit_by_activation", "add_batch_norm", "lr_down"),
        )
    rising = (
        _finite(s["loss_end"])
        and _finite(s["loss_start"])
        and s["loss_end"] > 1.1 * s["loss_start"]
    )
    max_upd = max((v["update"] for v in per.values() if _finite(v["update"])), default=None)
    if failing and (
        rising
        or s["up_share"] >= OSCILLATION_SHARE
        or (_finite(max_upd) and max_upd > LR_HIGH_UPDATE)
        or (_finite(peak) and peak > LR_PEAK_UPDATE)
        or s["non_finite_steps"] > 0
    ):
        add(
            "lr_too_high",
            [],
            {
                "loss_rising": rising,
                "loss_up_share": _fmt(s["up_share"]),
                "update_ratio_max_layer": _fmt(max_upd),
                "update_ratio_peak": _fmt(peak),
            },
            "the loss jumps up or oscillates instead of falling: each step overshoots",
            ("lr_down", "switch_optimizer", "add_schedule", "clip_gradients"),
        )
    sat = {n: per[n]["saturated"] for n in names if _finite(per[n]["saturated"])}
    sat_bad = [n for n, v in sat.items() if v >= SATURATED_SHARE]
    if failing and sat_bad:
        add(
            "saturation",
            sat_bad,
            {"saturated_share": {n: _fmt(sat[n]) for n in sat_bad}},
            "sigmoid/tanh units sit on their flat tails (|z| ≥ 5), where the derivative is "
            "~0, so almost no gradient passes",
            ("swap_activation", "reinit_by_activation", "add_batch_norm", "switch_optimizer"),
        )
    g0 = per[names[0]]["grad"] if names else None
    vanish = (_finite(ratio) and ratio < VANISHING_RATIO) or (_finite(g0) and g0 < VANISHING_ABS)
    if failing and vanish and not low_lr and not sym and not head_problem:
        small = [
            n
            for n in names[:-1]
            if _finite(per[n]["grad"])
            and _finite(per[names[-1]]["grad"])
            and per[n]["grad"] < VANISHING_RATIO * max(per[names[-1]]["grad"], 1e-300)
        ]
        add(
            "vanishing_gradients",
            small or names[:1],
            {"grad_ratio_first_to_head": _fmt(ratio), "first_layer_grad_norm": _fmt(g0)},
            "the gradient shrinks layer by layer on its way back, so the early layers "
            "barely change",
            ("reinit_by_activation", "swap_activation", "add_batch_norm", "switch_optimizer"),
        )
    dead = {n: per[n]["dead"] for n in hidden if _finite(per[n]["dead"])}
    dead_bad = [n for n, v in dead.items() if v >= DEAD_SHARE]
    if failing and dead_bad and not head_problem and not sym:
        add(
            "dying_relu",
            dead_bad,
            {"dead_share": {n: _fmt(dead[n]) for n in dead_bad}},
            "ReLU units output 0 for every input, so they pass no gradient and never recover",
            ("swap_activation", "reinit_by_activation", "lr_down"),
        )
    if low_lr and (failing or s["loss_drop"] < FLAT_LOSS_DROP) and not sym and not head_problem:
        add(
            "lr_too_low",
            [],
            {"head_update_ratio": _fmt(head_upd), "loss_drop": _fmt(s["loss_drop"])},
            "the loss is flat although gradients are healthy: each step changes the weights "
            "by a tiny fraction",
            ("lr_up", "switch_optimizer"),
        )
    over = _overfitting(health.epochs)
    if over:
        add(
            "overfitting",
            [],
            over,
            "the validation loss rises while the training loss "
            "keeps falling: the network memorizes the training set",
            ("add_l2", "add_dropout"),
        )
    from .findings import KINDS

    return [found[k] for k in KINDS if k in found]


def _peak_update(health: Health) -> float | None:
    """Largest ‖ΔW‖/‖W‖ of any layer at any probe step (None without updates)."""
    vals = [
        v.get("update_ratio")
        for r in health.probes
        for v in r.get("layers", {}).values()
        if _finite(v.get("update_ratio"))
    ]
    return max(vals) if vals else None


def _raw_series(health: Health, layer: str, key: str) -> list[tuple[int, Any]]:
    return [
        (r["step"], r.get("layers", {}).get(layer, {}).get(key))
        for r in health.probes
        if r.get("layers", {}).get(layer, {}).get(key) is not None
    ]


def _fan_out(health: Health, name: str) -> int:
    return next(
        (int(layer.get("fan_out", 0)) for layer in health.layers if layer["name"] == name), 0
    )


def _head_problem(ctx: dict[str, Any], s: dict[str, Any]) -> str:
    """Why the output head cannot fit the labels ('' if it can)."""
    act, loss = ctx.get("output_activation"), ctx.get("loss") or "cross_entropy"
    out, classes = ctx.get("out_features"), ctx.get("num_classes")
    if ctx.get("task") == "regression":
        return ""
    if out == 1 and act == "softmax":
        return (
            "a softmax over one output unit is always 1: the loss is constant and every "
            "gradient is exactly 0 (this is not dying ReLU)"
        )
    if act in ("relu", "leaky_relu", "elu", "selu", "gelu", "softplus"):
        return (
            f"a {act} on the output cuts off negative scores, so some classes can never "
            "win and dead output units pass no gradient"
        )
    if classes and out and loss != "bce" and out < classes:
        return f"the head has {out} outputs for {classes} classes"
    if loss == "bce" and act != "sigmoid":
        return "binary cross-entropy needs a probability: put a sigmoid on the single output"
    if loss == "nll" and act != "log_softmax":
        return ("the nll loss takes log-probabilities (as in torch): put a log_softmax on the "
                "output, or use cross-entropy on logits")
    if loss == "cross_entropy" and act in ("softmax", "sigmoid", "tanh") and s["failing"]:
        return (
            f"cross-entropy applies its own softmax: a {act} before it squashes the "
            "scores and the gradients"
        )
    return ""


def _overfitting(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    vl = [e.get("val_loss") for e in epochs]
    tl = [e.get("train_loss") for e in epochs]
    if len(epochs) < 4 or not all(_finite(v) for v in vl + tl):
        return {}
    best = min(range(len(vl)), key=vl.__getitem__)
    if best > len(vl) - 3 or vl[-1] < vl[best] * (1 + OVERFIT_RISE) or tl[-1] >= tl[best]:
        return {}
    gap = (epochs[-1].get("train_accuracy") or 0.0) - (epochs[-1].get("val_accuracy") or 0.0)
    if gap < OVERFIT_GAP:
        return {}
    return {
        "best_val_epoch": best + 1,
        "val_loss_best": _fmt(vl[best]),
        "val_loss_end": _fmt(vl[-1]),
        "train_loss_end": _fmt(tl[-1]),
        "accuracy_gap": _fmt(gap),
    }
