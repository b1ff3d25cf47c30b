"""Rules: a table of small pure functions from :class:`Signals` to :class:`Finding` objects.

This is the *decide* step. :func:`~trainwell.doctor.signals.signals` reduces the probe
record to one :class:`Signals` object (all windows, never one batch); each :class:`Rule`
of :data:`RULES` is one finding kind with its order, its ranked repairs and a pure check
``Signals -> (layers, evidence, explanation, confidence) | None``. :func:`diagnose_health`
runs the table and ranks the findings by cause (:mod:`trainwell.doctor.causes`). Every
threshold is a named constant in :mod:`trainwell.doctor.thresholds`.

Guiding measurements (DESIGN.md, "Measured facts", and ``cases/``):
- healthy deep tanh nets (Glorot) show first/last gradient ratios ~1e-2…1e-1 and learn:
  gradient findings are raised only while the run also fails to learn;
- a 1-unit softmax head gives all-zero gradients with no dead ReLU: the head is checked
  first and suppresses ``dying_relu``;
- a 50-layer sigmoid/N(0,1) net has a mild gradient ratio (~0.06) but saturated units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .causes import confidence, rank, share_confidence  # re-exported
from .findings import Finding, Health
from .heads import head_problem  # re-exported
from .signals import Signals, finite, signals, summarize  # summarize re-exported
from .thresholds import (
    DEAD_SHARE,
    EXPLODING_ABS,
    EXPLODING_RATIO,
    FAIL_LOSS_SHARE,
    FLAT_LOSS_DROP,
    INPUT_SCALE,
    LR_HIGH_UPDATE,
    LR_LOW_UPDATE,
    LR_PEAK_UPDATE,
    NEAR_CHANCE_SHARE,
    OSCILLATION_SHARE,
    OVERFIT_RISE,
    OVERREG_DROPOUT,
    OVERREG_L1,
    OVERREG_L2,
    SATURATED_SHARE,
    SYMMETRY_SPREAD,
    THRESHOLDS,
    VANISHING_ABS,
    VANISHING_RATIO,
)

__all__ = [
    "RULES",
    "THRESHOLDS",
    "Check",
    "Rule",
    "confidence",
    "diagnose_health",
    "head_problem",
    "share_confidence",
    "summarize",
]

Check = tuple[list[str], dict[str, Any], str, float]
"""What a rule returns when it fires: layers, evidence, explanation, confidence."""


@dataclass(frozen=True)
class Rule:
    """One finding kind: its report order, its ranked repairs and its pure check.

    Attributes:
        kind: the finding kind (see :data:`~trainwell.doctor.findings.KINDS`).
        order: rank among findings of equal confidence and cause (lower first).
        repairs: repair names, best first (see :data:`~trainwell.doctor.repairs.REPAIRS`).
        check: ``Signals -> Check | None``; None when the rule does not fire.
    """

    kind: str
    order: int
    repairs: tuple[str, ...]
    check: Callable[[Signals], Check | None]


def _g(v: Any) -> Any:
    """A number rounded to 4 significant digits for evidence (non-numbers unchanged)."""
    if isinstance(v, int):
        return v  # steps and epochs stay integers
    return float(f"{v:.4g}") if finite(v) else v


# ---- the rules, in report order ---------------------------------------------------------
def non_finite(s: Signals) -> Check | None:
    """Any non-finite loss/gradient, or a step the Trainer skipped."""
    if s.non_finite_steps <= 0:
        return None
    ev = {"non_finite_steps": s.non_finite_steps, "first_step": s.first_non_finite_step}
    where = f" (first at step {ev['first_step']})" if ev["first_step"] is not None else ""
    text = (
        f"the loss or the gradients became inf/NaN on {ev['non_finite_steps']} steps{where}: "
        "the steps are far too large or the numbers overflow"
    )
    return list(s.non_finite_layers), ev, text, 1.0


def bad_output_head(s: Signals) -> Check | None:
    """A ReLU output, a 1-unit softmax, a loss the head cannot feed, too few outputs."""
    text = head_problem(s)
    if not text:
        return None
    ev: dict[str, Any] = {
        "output_activation": s.output_activation,
        "loss": s.loss,
        "out_features": s.out_features,
        "num_classes": s.num_classes,
        "head_zero_grad_share": _g(s.head.zero),
    }
    if s.task == "regression" and s.target_range is not None:
        ev["target_min"], ev["target_max"] = (_g(v) for v in s.target_range)
    return [s.layer_names[-1] if s.layer_names else "head"], ev, text, 1.0


def symmetric_init(s: Signals) -> Check | None:
    """A hidden layer whose units are identical at the start."""
    sym = list(s.symmetric_layers)
    if not sym:
        return None
    spread = max(s.layers[n].spread or 0.0 for n in sym)
    text = (
        f"the units of {len(sym)} layer(s) start identical (unit spread {spread:.2g} < "
        f"{SYMMETRY_SPREAD:g}, e.g. zero or constant init), so they get the same gradient and "
        "stay identical: each layer acts like one unit"
    )
    return sym, {"unit_spread": {n: _g(s.layers[n].spread) for n in sym}}, text, 1.0


def unnormalized_inputs(s: Signals) -> Check | None:
    """First-layer input std or mean |x| above ``INPUT_SCALE``."""
    if not s.input_scale > INPUT_SCALE:
        return None
    text = (
        f"the input features have scale {s.input_scale:.3g} (standardized features have 1), "
        "so the first layer's outputs and gradients are huge and one learning rate cannot "
        "suit every layer"
    )
    conf = confidence(s.input_scale, INPUT_SCALE)
    return list(s.layer_names[:1]), {"input_scale": _g(s.input_scale)}, text, conf


def exploding_gradients(s: Signals) -> Check | None:
    """While failing: first/head gradient ratio or global norm above its threshold."""
    by_ratio = finite(s.max_grad_ratio) and s.max_grad_ratio > EXPLODING_RATIO  # type: ignore[operator]
    by_norm = finite(s.global_grad) and s.global_grad > EXPLODING_ABS  # type: ignore[operator]
    if not (s.failing and (by_ratio or by_norm)):
        return None
    ev: dict[str, Any] = {
        "max_grad_ratio_first_to_head": _g(s.max_grad_ratio),
        "global_grad_norm_median": _g(s.global_grad),
        "at_initialization": s.exploding_at_init,
    }
    why = []
    if by_ratio:
        why.append(f"the first layer's gradient reaches {s.max_grad_ratio:.3g}× the head's")
    if by_norm:
        why.append(f"the global gradient norm is {s.global_grad:.3g}")
    text = (
        f"{' and '.join(why)}: gradients grow layer by layer towards the input, so the "
        "early layers take huge steps"
    )
    if s.exploding_at_init:
        ev["init_grad_norm"] = _g(s.init_grad)
        ev["init_grad_ratio_first_to_head"] = _g(s.init_grad_ratio)
        at0 = []
        if finite(s.init_grad) and s.init_grad > EXPLODING_ABS:  # type: ignore[operator]
            at0.append(f"a gradient norm of {s.init_grad:.3g}")
        if finite(s.init_grad_ratio) and s.init_grad_ratio > EXPLODING_RATIO:  # type: ignore[operator]
            at0.append(f"a first/head ratio of {s.init_grad_ratio:.3g}")
        text += (
            f"; already at step 0, before any update ({' and '.join(at0)}): the "
            "initialization, not the learning rate, makes them explode"
        )
    conf = max(
        confidence(s.max_grad_ratio, EXPLODING_RATIO) if by_ratio else 0.5,
        confidence(s.global_grad, EXPLODING_ABS) if by_norm else 0.5,
    )
    return list(s.layer_names[:1]), ev, text, conf


def lr_too_high(s: Signals) -> Check | None:
    """While failing: the loss rises or oscillates, or updates are huge."""
    if not s.failing:
        return None
    why, conf = [], []
    if s.loss_rising:
        why.append(f"the loss rose from {s.loss_start:.3g} to {s.loss_end:.3g}")
        conf.append(confidence(s.loss_end / max(s.loss_start, 1e-12), 1.1))  # type: ignore[operator,type-var]
    if s.up_share >= OSCILLATION_SHARE:
        why.append(f"the loss went up in {s.up_share:.0%} of the windows")
        conf.append(share_confidence(s.up_share, OSCILLATION_SHARE))
    upd = s.max_update
    if finite(upd) and upd > LR_HIGH_UPDATE:  # type: ignore[operator]
        why.append(f"a typical step changes a layer's weights by {upd:.3g} of their size")
        conf.append(confidence(upd, LR_HIGH_UPDATE))
    if finite(s.peak_update) and s.peak_update > LR_PEAK_UPDATE:  # type: ignore[operator]
        why.append(f"one step moved a layer by {s.peak_update:.3g}× its weights")
        conf.append(confidence(s.peak_update, LR_PEAK_UPDATE))
    if not why:
        return None  # overflow alone is the non_finite finding, not evidence of its cause
    if s.non_finite_steps > 0:
        why.append(f"{s.non_finite_steps} steps overflowed")
    ev = {
        "loss_rising": s.loss_rising,
        "loss_up_share": _g(s.up_share),
        "update_ratio_max_layer": _g(upd),
        "update_ratio_peak": _g(s.peak_update),
    }
    return [], ev, f"{'; '.join(why)}: each step overshoots", max(conf)


def saturation(s: Signals) -> Check | None:
    """A layer with at least ``SATURATED_SHARE`` saturated entries, while failing or, while
    learning, where the initialization saturated them (at step 0 already)."""
    sat = {n: v.saturated for n, v in s.layers.items() if finite(v.saturated)}
    bad = [n for n, v in sat.items() if v >= SATURATED_SHARE]  # type: ignore[operator]
    at_init = finite(s.init_saturated) and s.init_saturated >= SATURATED_SHARE  # type: ignore[operator]
    # While the run still learns, saturation is a finding only where the initialization put
    # the units there and they stayed (the run's median too): it then learns on the few
    # units left (healthy sigmoid/tanh controls: ≤ 1% saturated, at step 0 and after).
    if not (bad and (s.failing or at_init)):
        return None
    worst = max(bad, key=lambda n: sat[n])  # type: ignore[arg-type,return-value]
    act = s.layers[worst].activation or "sigmoid/tanh"
    text = (
        f"{sat[worst]:.0%} of the {act} outputs of layer {worst} sit on the flat tails "
        "(|z| ≥ 5), where the derivative is ~0, so almost no gradient passes"
    )
    conf = share_confidence(sat[worst], SATURATED_SHARE)  # type: ignore[arg-type]
    if not s.failing:
        text += "; the run still learns, but only through the units left"
    if at_init:
        text += (
            f"; {s.init_saturated:.0%} already at step 0, before any update: the initialization "
            "(or the inputs), not the learning rate, saturates them"
        )
    ev: dict[str, Any] = {"saturated_share": {n: _g(sat[n]) for n in bad},
                          "at_initialization": at_init}
    if at_init:
        ev["init_saturated_share"] = _g(s.init_saturated)
    return bad, ev, text, conf


def vanishing_gradients(s: Signals) -> Check | None:
    """While failing: the first/head ratio or the first layer's gradient norm is tiny."""
    ratio, g0 = s.grad_ratio, s.first.grad
    by_ratio = finite(ratio) and ratio < VANISHING_RATIO  # type: ignore[operator]
    by_abs = finite(g0) and g0 < VANISHING_ABS  # type: ignore[operator]
    if not (s.failing and (by_ratio or by_abs)):
        return None
    if s.tiny_updates or s.symmetric_layers or head_problem(s):
        return None  # tiny steps, identical units or the head explain it (other findings)
    gh = s.head.grad
    small = [
        n
        for n in s.hidden
        if finite(s.layers[n].grad) and finite(gh)
        and s.layers[n].grad < VANISHING_RATIO * max(gh, 1e-300)  # type: ignore[operator,type-var]
    ]  # fmt: skip
    why = (
        f"the first layer's gradient is {ratio:.2g} of the head's"
        if by_ratio
        else f"the first layer's gradient norm is {g0:.2g}"
    )
    text = f"{why}: the gradient shrinks layer by layer on its way back, so the early layers barely change"
    conf = (
        confidence(ratio, VANISHING_RATIO, above=False)
        if by_ratio
        else confidence(g0, VANISHING_ABS, above=False)
    )
    ev = {"grad_ratio_first_to_head": _g(ratio), "first_layer_grad_norm": _g(g0)}
    return small or list(s.layer_names[:1]), ev, text, conf


def dying_relu(s: Signals) -> Check | None:
    """While failing: a hidden layer with at least ``DEAD_SHARE`` units dead on the probe batch."""
    dead = {n: s.layers[n].dead for n in s.hidden if finite(s.layers[n].dead)}
    bad = [n for n, v in dead.items() if v >= DEAD_SHARE]  # type: ignore[operator]
    if not (s.failing and bad) or head_problem(s) or s.symmetric_layers:
        return None
    worst = max(bad, key=lambda n: dead[n])  # type: ignore[arg-type,return-value]
    bias = s.layers[worst].bias
    why = (
        f"; its biases start at a mean of {bias:.3g}, below zero, so most units start off"
        if finite(bias) and bias < 0  # type: ignore[operator]
        else ""
    )
    text = (
        f"{dead[worst]:.0%} of the ReLU units of layer {worst} output 0 for every probe sample "
        f"({len(bad)} layer(s) at ≥ {DEAD_SHARE:.0%}){why}: they pass no gradient and never "
        "recover"
    )
    conf = share_confidence(dead[worst], DEAD_SHARE)  # type: ignore[arg-type]
    ev = {"dead_share": {n: _g(dead[n]) for n in bad}, "bias_mean_start": _g(bias)}
    return bad, ev, text, conf


def lr_too_low(s: Signals) -> Check | None:
    """Tiny head updates with healthy gradients, while failing or with a flat loss."""
    flat = s.failing or s.loss_drop < FLAT_LOSS_DROP
    if not (s.tiny_updates and flat) or s.symmetric_layers or head_problem(s):
        return None
    upd = s.head.update
    text = (
        f"the loss fell by only {s.loss_drop:.1%} although gradients are healthy: each step "
        f"changes the head's weights by {upd:.2g} of their size (below {LR_LOW_UPDATE:g})"
    )
    ev = {"head_update_ratio": _g(upd), "loss_drop": _g(s.loss_drop)}
    return [], ev, text, confidence(upd, LR_LOW_UPDATE, above=False)


def overfitting(s: Signals) -> Check | None:
    """Validation loss risen above its best for several epochs while the training loss falls."""
    over = s.overfitting
    if not over:
        return None
    ev = {k: _g(v) for k, v in over.items()}
    drop = (
        f", validation accuracy {ev['val_accuracy_drop']:+.1%} below its value there"
        if "val_accuracy_drop" in ev and ev["val_accuracy_drop"] > 0
        else ""
    )
    if "train_accuracy" in ev:
        drop += (f"; the training set is memorized (training accuracy {ev['train_accuracy']:.1%}, "
                 f"{100 * ev['accuracy_gap']:.1f} points above validation)")
    if "val_accuracy_gain_since_best" in ev:
        drop += (f"; validation accuracy still rose {100 * ev['val_accuracy_gain_since_best']:.1f} "
                 "points since "
                 "that epoch, so a penalty comes before early stopping")
    text = (
        f"the validation loss rose from {ev['val_loss_best']:.3g} (epoch {ev['best_val_epoch']}) "
        f"to {ev['val_loss_end']:.3g} ({ev['val_loss_rise']:.0%} above its best, "
        f"{ev['epochs_since_best']} epochs later{drop}) while the training loss fell to "
        f"{ev['train_loss_end']:.3g}: the network memorizes the training set"
    )
    return [], ev, text, confidence(1.0 + over["val_loss_rise"], 1.0 + OVERFIT_RISE)


def _chance_bar(s: Signals) -> float:
    """The accuracy under which a classification run is "at chance": chance plus
    ``NEAR_CHANCE_SHARE`` of the gap from chance to 100 %."""
    return s.chance_acc + NEAR_CHANCE_SHARE * (1.0 - s.chance_acc)


def over_regularized(s: Signals) -> Check | None:
    """Strong dropout or penalties while the run, training accuracy included, stays at chance."""
    if s.task == "regression" or not finite(s.acc):
        return None
    bar = _chance_bar(s)
    train_acc = s.train_acc if finite(s.train_acc) else s.acc
    near = s.acc < bar and train_acc < bar  # type: ignore[operator]
    unfit = finite(s.loss_end) and s.loss_end >= FAIL_LOSS_SHARE * s.chance_loss  # type: ignore[operator]
    strong = []
    if s.dropout >= OVERREG_DROPOUT:
        strong.append(f"dropout {s.dropout:g}")
    if s.l2 >= OVERREG_L2:
        strong.append(f"an L2 penalty λ2 = {s.l2:g}")
    if s.l1 >= OVERREG_L1:
        strong.append(f"an L1 penalty λ1 = {s.l1:g}")
    if not (near and unfit and strong):
        return None
    ev: dict[str, Any] = {
        "dropout": _g(s.dropout),
        "l2": _g(s.l2),
        "l1": _g(s.l1),
        "train_accuracy": _g(train_acc),
        "val_accuracy": _g(s.acc),
        "train_loss_end": _g(s.loss_end),
        "chance_loss": _g(s.chance_loss),
    }
    text = (
        f"with {' and '.join(strong)} the network cannot fit even its training set: the "
        f"training loss ends at {s.loss_end:.3g} (chance's is {s.chance_loss:.3g}) and the "
        f"training accuracy {train_acc:.3f} and validation accuracy {s.acc:.3f} sit at chance "
        f"({s.chance_acc:.3f}): the regularization, not the data, decides the outputs"
    )
    conf = max(
        share_confidence(s.dropout, OVERREG_DROPOUT) if s.dropout >= OVERREG_DROPOUT else 0.5,
        confidence(s.l2, OVERREG_L2) if s.l2 >= OVERREG_L2 else 0.5,
        confidence(s.l1, OVERREG_L1) if s.l1 >= OVERREG_L1 else 0.5,
    )
    return [], ev, text, conf


def near_chance(s: Signals) -> bool:
    """A classification run whose validation and training accuracy (when recorded) both end
    below chance + ``NEAR_CHANCE_SHARE`` of the gap to 100 % and whose training loss ends at
    or above chance's (the uniform guess's): it learned nothing measurable. (A slow starter
    whose loss has fallen below chance's — the healthy tanh net on circles after one epoch:
    0.662 against 0.693, accuracy 0.58 — is not called that.)"""
    if s.task == "regression" or not finite(s.acc):
        return False
    bar = _chance_bar(s)
    train_acc = s.train_acc if finite(s.train_acc) else s.acc
    return bool(s.acc < bar and train_acc < bar  # type: ignore[operator]
                and finite(s.loss_end)
                and s.loss_end >= s.chance_loss)  # type: ignore[operator]


def not_learning(s: Signals) -> Check:
    """The fallback: a run at chance that no other rule explains gets this finding, never
    "healthy". Its evidence says what was ruled out, and whether the known-good recipe on
    the same architecture learns (a yardstick at chance too points at the data)."""
    train_acc = s.train_acc if finite(s.train_acc) else s.acc
    ev: dict[str, Any] = {
        "train_accuracy": _g(train_acc),
        "val_accuracy": _g(s.acc),
        "train_loss_end": _g(s.loss_end),
        "chance_loss": _g(s.chance_loss),
    }
    yard = s.yardstick_acc if s.yardstick_acc is not None else s.yardstick_chance_acc
    if yard is not None:
        ev["yardstick_accuracy"] = _g(yard)
    text = (
        f"the run ends at chance: training accuracy {train_acc:.3f}, validation accuracy "
        f"{s.acc:.3f} (chance {s.chance_acc:.3f}), training loss {s.loss_end:.3g} against "
        f"chance's {s.chance_loss:.3g}, and no gradient, activation, head or learning-rate "
        "rule explains it"
    )
    bar = _chance_bar(s)
    if yard is not None and yard < bar:
        ev["yardstick_at_chance"] = True  # no training recipe to try: nothing to repair
        text += (f"; the known-good recipe on the same architecture stays at chance too "
                 f"(validation accuracy {yard:.3f}): nothing in training is left to change; "
                 "check that the labels belong to the inputs")
    elif yard is not None:
        text += (f"; the known-good recipe on the same architecture learns "
                 f"(validation accuracy {yard:.3f}): the training recipe is at fault")
    return [], ev, text, 0.5


RULES: tuple[Rule, ...] = (
    Rule("non_finite", 0, ("lr_down", "clip_gradients", "rollback_skip"), non_finite),
    Rule("bad_output_head", 1, ("fix_output_head",), bad_output_head),
    Rule("symmetric_init", 2, ("reinit_by_activation",), symmetric_init),
    Rule(
        "unnormalized_inputs",
        3,
        ("standardize_inputs", "add_batch_norm", "lr_down"),
        unnormalized_inputs,
    ),
    Rule(
        "exploding_gradients",
        4,
        # re-initializing first: where the init is already by activation it is not offered
        ("reinit_by_activation", "clip_gradients", "add_batch_norm", "lr_down"),
        exploding_gradients,
    ),
    Rule(
        "lr_too_high",
        5,
        ("lr_down", "switch_optimizer", "add_schedule", "clip_gradients", "add_plateau"),
        lr_too_high,
    ),
    Rule(
        "saturation",
        6,
        ("swap_activation", "reinit_by_activation", "add_batch_norm", "switch_optimizer"),
        saturation,
    ),
    Rule(
        "vanishing_gradients",
        7,
        ("reinit_by_activation", "swap_activation", "add_batch_norm", "switch_optimizer"),
        vanishing_gradients,
    ),
    Rule("dying_relu", 8, ("swap_activation", "reinit_by_activation", "lr_down"), dying_relu),
    Rule("lr_too_low", 9, ("lr_up", "switch_optimizer"), lr_too_low),
    Rule("overfitting", 10, ("early_stopping", "add_l2", "add_dropout"), overfitting),
    Rule("over_regularized", 11, ("reduce_regularization",), over_regularized),
)
"""The rule table: one row per finding kind (see :class:`Rule`); ``not_learning`` is the
fallback :func:`diagnose_health` adds when none of them fires on a run at chance."""

NOT_LEARNING_REPAIRS: tuple[str, ...] = ("switch_optimizer", "reinit_by_activation",
                                         "standardize_inputs", "lr_down", "lr_up")
"""No mechanism found: the yardstick recipe's parts, then the learning rate both ways."""


def _ranked_repairs(rule: Rule, evidence: dict[str, Any]) -> tuple[str, ...]:
    """The rule's repairs, re-ranked where the evidence says the first would hurt: early
    stopping at the loss's best epoch gives up the validation accuracy gained since."""
    if rule.kind == "overfitting" and evidence.get("val_accuracy_gain_since_best"):
        return tuple(n for n in rule.repairs if n != "early_stopping") + ("early_stopping",)
    return rule.repairs


def diagnose_health(health: Health) -> list[Finding]:
    """Apply every rule of :data:`RULES` to a run's health record, primary cause first.

    Each finding's evidence also carries the run's accuracy, chance accuracy (for
    classification) and start/end loss. Findings are ranked by cause
    (:func:`trainwell.doctor.causes.rank`): the primary finding first, then what it explains.

    Args:
        health: the record of one run (from the callback, :func:`watch` or a file).

    Returns:
        The findings, primary first.
    """
    s = signals(health)
    base: dict[str, Any] = {"accuracy": _g(s.acc), "loss_start": _g(s.loss_start),
                            "loss_end": _g(s.loss_end)}  # fmt: skip
    if s.task != "regression":
        base["chance_accuracy"] = _g(s.chance_acc)
    found = []
    for rule in sorted(RULES, key=lambda r: r.order):
        out = rule.check(s)
        if out is not None:
            layers, evidence, text, conf = out
            found.append(
                Finding(rule.kind, tuple(layers), {**evidence, **base}, text,
                        _ranked_repairs(rule, evidence), conf)
            )
    if not found and near_chance(s):
        layers, evidence, text, conf = not_learning(s)
        repairs = () if evidence.get("yardstick_at_chance") else NOT_LEARNING_REPAIRS
        found.append(Finding("not_learning", tuple(layers), {**evidence, **base}, text,
                             repairs, conf))
    return rank(found)
