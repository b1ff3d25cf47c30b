"""Signals: reduce a run's :class:`Health` record to the few numbers the rules compare.

This is the first half of the *decide* step (:mod:`trainwell.doctor.rules` is the second).
Every signal is a median or a mean over windows of the run, never one batch, so a single
noisy step cannot raise a finding. :func:`signals` builds one :class:`Signals` object with
public fields; every rule is a pure function of it. :func:`summarize` is the same as a dict.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .findings import Health
from .thresholds import (
    EXPLODING_ABS,
    EXPLODING_RATIO,
    FAIL_GAP_SHARE,
    FAIL_LOSS_SHARE,
    FAIL_YARDSTICK_SHARE,
    LOSS_WINDOWS,
    LR_LOW_UPDATE,
    LR_PEAK_UPDATE,
    MEMORIZED_ACC,
    MEMORIZED_LOSS_SHARE,
    OVERFIT_ACC_DROP,
    OVERFIT_BIG_RISE,
    OVERFIT_GAP,
    OVERFIT_HELD,
    OVERFIT_PATIENCE,
    OVERFIT_RISE,
    OVERFIT_STILL_GAINING,
    SYMMETRY_SPREAD,
    VANISHING_ABS,
)

__all__ = ["LayerSignals", "Signals", "finite", "signals", "summarize"]


def finite(v: Any) -> bool:
    """True for a finite int/float (bools and None are not numbers here)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_finite = finite  # the old private name, kept for callers outside the doctor


def _median(values: list[Any]) -> float | None:
    """Median of the finite entries of ``values`` (None when there are none)."""
    vals = [v for v in values if finite(v)]
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class LayerSignals:
    """Medians over the run of one layer's probe statistics (None where never measured).

    Attributes:
        grad: ‖∂J/∂W‖; zero: share of exactly-zero gradient entries; dead: share of dead
        units (step 0 excluded); saturated: share of saturated entries; update: ‖ΔW‖/‖W‖
        (step 0 excluded); spread: unit spread at the first probe (symmetry); fan_out: units;
        activation: the activation the probes saw after the layer (module or inferred);
        bias: the mean bias at the first probe (None without a bias).
    """

    grad: float | None = None
    zero: float | None = None
    dead: float | None = None
    saturated: float | None = None
    update: float | None = None
    spread: float | None = None
    fan_out: int = 0
    activation: str | None = None
    bias: float | None = None


@dataclass(frozen=True)
class Signals:
    """Everything the rules look at, reduced from one :class:`Health` record.

    Loss figures are medians of the first/last 20% of finite step losses; ``up_share`` is
    the share of successive loss windows (of :data:`LOSS_WINDOWS`) rising by more than 10%.
    Per-layer medians are in ``layers`` (input side first, the head last).
    ``yardstick_acc`` is the validation accuracy the same network reaches with a known-good
    recipe at the same budget (None when unknown); ``target_range`` the regression
    targets' (min, max) (None when unknown or for classes).
    """

    task: str | None = None
    loss: str = "cross_entropy"
    num_classes: int | None = None
    out_features: int | None = None
    output_activation: str | None = None
    chance_loss: float = math.log(2)
    chance_acc: float = 0.5
    acc: float | None = None
    loss_start: float | None = None
    loss_end: float | None = None
    loss_drop: float = 0.0
    up_share: float = 0.0
    steps: int = 0
    non_finite_steps: int = 0
    first_non_finite_step: int | None = None
    non_finite_layers: tuple[str, ...] = ()
    failing: bool = False
    layer_names: tuple[str, ...] = ()
    layers: dict[str, LayerSignals] = field(default_factory=dict)
    grad_ratio: float | None = None  # median first/head gradient norm
    max_grad_ratio: float | None = None  # largest first/head ratio at any probe step
    global_grad: float | None = None  # median global gradient norm
    peak_update: float | None = None  # largest ‖ΔW‖/‖W‖ of any layer at any probe step
    input_scale: float = 0.0  # max(std, mean |x|) of the first layer's input at step 0
    init_grad: float | None = None  # global gradient norm at step 0 (before any update)
    init_grad_ratio: float | None = None  # first/head gradient-norm ratio at step 0
    init_saturated: float | None = None  # largest saturated share of any layer at step 0
    epochs: tuple[dict[str, Any], ...] = ()
    yardstick_acc: float | None = None
    # the yardstick's accuracy where it trained but stayed near chance (then no bar: None above)
    yardstick_chance_acc: float | None = None
    target_range: tuple[float, float] | None = None
    train_acc: float | None = None  # last epoch's training accuracy, when recorded
    dropout: float = 0.0  # the largest dropout rate in the model (0 when unknown)
    l1: float = 0.0  # λ1 of an L1 penalty (0 when unknown)
    l2: float = 0.0  # λ2 of an L2 penalty (0 when unknown)

    # ---- derived facts several rules share --------------------------------------------
    @property
    def exploding_at_init(self) -> bool:
        """Gradients explode at step 0 already, before any update: the initialization (or
        the inputs), not the learning rate, makes them explode."""
        return (finite(self.init_grad) and self.init_grad > EXPLODING_ABS) or (  # type: ignore[operator]
            finite(self.init_grad_ratio) and self.init_grad_ratio > EXPLODING_RATIO  # type: ignore[operator]
        )

    @property
    def head(self) -> LayerSignals:
        """The output layer's signals (empty when the model has no weighted layer)."""
        return self.layers[self.layer_names[-1]] if self.layer_names else LayerSignals()

    @property
    def first(self) -> LayerSignals:
        """The input layer's signals."""
        return self.layers[self.layer_names[0]] if self.layer_names else LayerSignals()

    @property
    def hidden(self) -> tuple[str, ...]:
        """Names of the layers before the head."""
        return self.layer_names[:-1]

    @property
    def loss_rising(self) -> bool:
        """The loss ends more than 10% above where it started."""
        return (
            finite(self.loss_end)
            and finite(self.loss_start)
            and self.loss_end > 1.1 * self.loss_start  # type: ignore[operator]
        )

    @property
    def max_update(self) -> float | None:
        """The largest median ‖ΔW‖/‖W‖ over the layers."""
        vals = [v.update for v in self.layers.values() if finite(v.update)]
        return max(vals) if vals else None  # type: ignore[type-var]

    @property
    def symmetric_layers(self) -> tuple[str, ...]:
        """Hidden layers (with >1 unit) whose units were identical at the first probe."""
        return tuple(
            n
            for n in self.hidden
            if finite(self.layers[n].spread)
            and self.layers[n].spread < SYMMETRY_SPREAD  # type: ignore[operator]
            and self.layers[n].fan_out > 1
        )

    @property
    def tiny_updates(self) -> bool:
        """Tiny head updates although the head's gradient is healthy (the LR is too low)."""
        h = self.head
        return (
            finite(h.update)
            and h.update < LR_LOW_UPDATE  # type: ignore[operator]
            and self.non_finite_steps == 0
            and finite(h.grad)
            and h.grad > VANISHING_ABS  # type: ignore[operator]
            and not (finite(self.peak_update) and self.peak_update > LR_PEAK_UPDATE)  # type: ignore[operator]
        )

    @property
    def overfitting(self) -> dict[str, Any]:
        """Evidence of overfitting from the epochs ({} when there is none)."""
        return _overfitting(list(self.epochs))


def _layer_median(health: Health, layer: str, key: str, skip_first: bool = False) -> float | None:
    series = health.series(layer, key)
    if skip_first and len(series) > 1:
        series = series[1:]
    return _median([v for _, v in series])


def _layer_activation(health: Health, layer: dict[str, Any]) -> str | None:
    """The activation the probes saw after the layer most often, else the module-based one.

    A probe that measured the layer's output (``act_kind`` present, None = identity) wins
    over the name paired by registration order, which a user's net may not follow.
    """
    recs = [p.get("layers", {}).get(layer["name"], {}) for p in health.probes]
    measured = [r.get("act_kind") for r in recs if "act_kind" in r]
    named = [k for k in measured if k]
    if named:
        return max(set(named), key=named.count)
    if measured:
        return None
    return layer.get("activation") or None


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
        if finite(g0) and finite(gh) and gh > 0:
            out.append(g0 / gh)
    return out


def _losses(health: Health) -> dict[str, Any]:
    losses = [v for v in health.losses if finite(v)]
    n = len(losses)
    k = max(1, n // 5)
    start = _median(losses[:k]) if losses else None
    end = _median(losses[-k:]) if losses else None
    drop = (start - end) / abs(start) if start and end is not None else 0.0
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
    return {"loss_start": start, "loss_end": end, "loss_drop": drop, "up_share": up_share}


def signals(health: Health) -> Signals:
    """Reduce a run's health record to the :class:`Signals` the rules use.

    Args:
        health: the record of one run.

    Returns:
        One frozen :class:`Signals`.
    """
    ctx = health.context
    out_features = ctx.get("out_features")
    classes = max(int(ctx.get("num_classes") or out_features or 2), 2)
    loss_name = ctx.get("loss") or "cross_entropy"
    chance_loss = math.log(2) if loss_name == "bce" else math.log(classes)
    chance_acc = 1.0 / classes
    lo = _losses(health)
    non_finite = sum(1 for v in health.losses if not finite(v))
    non_finite += sum(1 for p in health.probes if p.get("grads_finite") is False)
    non_finite = max(non_finite, int(ctx.get("skipped_steps") or 0))
    last = health.epochs[-1] if health.epochs else {}
    acc = last.get("val_accuracy", last.get("train_accuracy"))
    yard_raw = ctx.get("yardstick_accuracy")
    yard = float(yard_raw) if isinstance(yard_raw, int | float) and finite(yard_raw) else None
    failing = _behind(acc, chance_acc, 1.0, FAIL_GAP_SHARE) or (
        yard is not None and _behind(acc, chance_acc, yard, FAIL_YARDSTICK_SHARE)
    )
    rng = ctx.get("target_range")
    target_range = (
        (float(rng[0]), float(rng[1]))
        if isinstance(rng, list | tuple) and len(rng) == 2 and all(finite(v) for v in rng)
        else None
    )
    if (finite(lo["loss_end"]) and lo["loss_end"] > FAIL_LOSS_SHARE * chance_loss) or not any(
        finite(v) for v in health.losses
    ):
        failing = True
    names = health.layer_names
    first_probe = health.probes[0] if health.probes else {}
    per = {
        layer["name"]: LayerSignals(
            grad=_layer_median(health, layer["name"], "grad_norm"),
            zero=_layer_median(health, layer["name"], "grad_zero_share"),
            dead=_layer_median(health, layer["name"], "dead_share", skip_first=True),
            saturated=_layer_median(health, layer["name"], "saturated_share"),
            update=_layer_median(health, layer["name"], "update_ratio", skip_first=True),
            spread=first_probe.get("layers", {}).get(layer["name"], {}).get("unit_spread"),
            fan_out=int(layer.get("fan_out") or 0),
            activation=_layer_activation(health, layer),
            bias=first_probe.get("layers", {}).get(layer["name"], {}).get("bias_mean"),
        )
        for layer in health.layers
    }
    ratio = None
    if len(names) >= 2:
        g_first, g_head = per[names[0]].grad, per[names[-1]].grad
        if g_first is not None and g_head:
            ratio = g_first / g_head
    ratios = _ratios(health)
    updates = [
        v.get("update_ratio")
        for r in health.probes
        for v in r.get("layers", {}).values()
        if finite(v.get("update_ratio"))
    ]
    inp = first_probe.get("input") or {}
    bad_layers = tuple(
        n
        for n in names
        if any(
            not finite(r.get("layers", {}).get(n, {}).get("grad_norm"))
            for r in health.probes
            if r.get("layers", {}).get(n, {}).get("grad_norm") is not None
        )
    )
    return Signals(
        task=ctx.get("task"),
        loss=loss_name,
        num_classes=ctx.get("num_classes"),
        out_features=out_features,
        output_activation=_probed_head(health, ctx.get("output_activation")),
        chance_loss=chance_loss,
        chance_acc=chance_acc,
        acc=acc,
        steps=len(health.losses),
        non_finite_steps=non_finite,
        first_non_finite_step=next((i for i, v in enumerate(health.losses) if not finite(v)), None),
        non_finite_layers=bad_layers,
        failing=bool(failing),
        layer_names=tuple(names),
        layers=per,
        grad_ratio=ratio,
        max_grad_ratio=max(ratios) if ratios else None,
        global_grad=_median([p.get("grad_norm") for p in health.probes]),
        peak_update=max(updates) if updates else None,
        input_scale=max(inp.get("std", 0.0) or 0.0, inp.get("abs_mean", 0.0) or 0.0),
        init_grad=_at_init(first_probe, first_probe.get("grad_norm")),
        init_grad_ratio=_at_init(first_probe, next(iter(_ratios(
            Health(layers=health.layers, probes=health.probes[:1]))), None)),
        init_saturated=_at_init(first_probe, max(
            (v.get("saturated_share") for v in first_probe.get("layers", {}).values()
             if finite(v.get("saturated_share"))), default=None)),
        epochs=tuple(health.epochs),
        yardstick_acc=yard,
        yardstick_chance_acc=_float_or_none(ctx.get("yardstick_chance_accuracy")),
        target_range=target_range,
        train_acc=float(last["train_accuracy"]) if finite(last.get("train_accuracy")) else None,
        **_regularization(ctx),
        **lo,
    )


def _regularization(ctx: dict[str, Any]) -> dict[str, float]:
    """``dropout``, ``l1`` and ``l2`` from ``context["regularization"]`` (0 when unknown)."""
    reg = ctx.get("regularization") or {}
    return {k: float(reg[k]) if finite(reg.get(k)) else 0.0 for k in ("dropout", "l1", "l2")}


def _at_init(probe: dict[str, Any], value: Any) -> float | None:
    """``value`` when ``probe`` is the probe of step 0 (the initialization: no update has
    happened, so no learning rate is in it) and finite, else None."""
    return float(value) if probe.get("step") == 0 and finite(value) else None


def _behind(acc: Any, chance: float, top: float, share: float) -> bool:
    """``acc`` closed less than ``share`` of the gap from ``chance`` to ``top`` (a finite acc)."""
    if not finite(acc) or top <= chance:
        return False  # a yardstick at chance itself sets no bar
    return bool(acc < chance + share * (top - chance))


def _probed_head(health: Health, declared: str | None = None) -> str | None:
    """What produces the model's output, as the probes measured it (most often seen).

    Probes that measured the head (``head_measured``: the activation module that ran right
    after the head layer, or the activation inferred from the output; None = logits) decide;
    the ``declared`` one (from the modules' registration order, which a user's net may not
    follow) and older records without the flag fill in only where none did.
    """
    measured = [p.get("output_activation") for p in health.probes if p.get("head_measured")]
    if measured:
        return max(set(measured), key=lambda k: (measured.count(k), k is None))
    if declared:
        return declared
    seen = [p.get("output_activation") for p in health.probes if p.get("output_activation")]
    return max(set(seen), key=seen.count) if seen else None


def summarize(health: Health) -> dict[str, Any]:
    """The :class:`Signals` of ``health`` as a plain dict (kept for reports and old callers).

    Returns:
        A dict with ``chance_loss``, ``chance_acc``, ``acc``, ``loss_start``, ``loss_end``,
        ``loss_drop``, ``up_share``, ``non_finite_steps``, ``failing``, per-layer medians
        under ``layers`` and ``grad_ratio`` (first/head) among others.
    """
    s = signals(health)
    d = asdict(s)
    d["global_grad"] = s.global_grad
    return d


def _overfitting(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Validation loss up ≥ OVERFIT_RISE over its minimum for ≥ OVERFIT_PATIENCE epochs.

    Early stopping with patience P stops P epochs after the best validation loss; this asks
    for exactly what it would see within the same epochs (so a repair by early stopping can
    act on it), with the training loss still below its value at the best epoch. For
    classification the rise must also cost accuracy (OVERFIT_ACC_DROP below the best val
    accuracy, a train/val gap of OVERFIT_GAP, or a rise of OVERFIT_BIG_RISE).
    """
    if len(epochs) < OVERFIT_PATIENCE + 1 or not all(
        finite(e.get("val_loss")) and finite(e.get("train_loss")) for e in epochs
    ):
        return {}
    vl: list[float] = [e["val_loss"] for e in epochs]
    tl: list[float] = [e["train_loss"] for e in epochs]
    best = min(range(len(vl)), key=vl.__getitem__)
    after = len(vl) - 1 - best  # epochs since the best
    # the rise holds over the last OVERFIT_HELD epochs (one noisy epoch is no trend: a
    # healthy deep SELU run ended 26% above its best with the epoch before back within 4%)
    held = min(vl[-OVERFIT_HELD:])
    if after < OVERFIT_PATIENCE or held < vl[best] * (1 + OVERFIT_RISE) or tl[-1] >= tl[best]:
        return {}
    last = epochs[-1]
    gap = (last.get("train_accuracy") or 0.0) - (last.get("val_accuracy") or 0.0)
    out = {
        "best_val_epoch": best + 1,
        "epochs_since_best": after,
        "val_loss_best": vl[best],
        "val_loss_end": vl[-1],
        "val_loss_rise": vl[-1] / vl[best] - 1 if vl[best] > 0 else math.inf,
        "train_loss_end": tl[-1],
        "accuracy_gap": gap,
    }
    acc_best, acc_end = epochs[best].get("val_accuracy"), last.get("val_accuracy")
    if isinstance(acc_best, int | float) and isinstance(acc_end, int | float):
        out["val_accuracy_drop"] = float(acc_best) - float(acc_end)  # clean validation labels
        accs = [float(e["val_accuracy"]) for e in epochs if finite(e.get("val_accuracy"))]
        top = max(accs, default=float(acc_end))
        # Where the accuracy still rose after the loss's best epoch, early stopping there
        # would lose accuracy: the gap or a big loss rise alone is not a cost then (the
        # default 1cycle run: val loss +26% from epoch 13, accuracy +1.4 points since).
        still_gaining = float(acc_end) - float(acc_best) >= OVERFIT_STILL_GAINING
        # The training set memorized (training accuracy ~1, training loss a sliver of the
        # validation loss) with a wide train/val gap is overfitting even while the validation
        # accuracy still rises: the net fits what it can no longer generalize from.
        train_acc = float(last["train_accuracy"]) if finite(last.get("train_accuracy")) else 0.0
        memorized = (
            train_acc >= MEMORIZED_ACC and gap >= OVERFIT_GAP
            and tl[-1] <= MEMORIZED_LOSS_SHARE * vl[-1]
        )
        costs = top - float(acc_end) >= OVERFIT_ACC_DROP or memorized or (not still_gaining and (
            ("train_accuracy" in last and gap >= OVERFIT_GAP)
            or out["val_loss_rise"] >= OVERFIT_BIG_RISE
        ))
        if not costs:  # the loss rose, the accuracy did not suffer: no finding (see thresholds)
            return {}
        if still_gaining:
            # early stopping at the loss's best epoch would give up accuracy gained since
            out["val_accuracy_gain_since_best"] = float(acc_end) - float(acc_best)
        if memorized:
            out["train_accuracy"] = train_acc
    return out


def _float_or_none(v: Any) -> float | None:
    """``v`` as a finite float, or None."""
    return float(v) if isinstance(v, int | float) and finite(v) else None
