"""Output-head checks: why a model's head cannot fit its targets ('' when it can).

A pure function of :class:`~trainwell.doctor.signals.Signals`, used by the
``bad_output_head`` rule and, as a veto, by the rules whose symptoms a bad head explains
(zero gradients, dead units, tiny updates).
"""

from __future__ import annotations

from .signals import Signals
from .thresholds import BOUNDED_HEADS, TARGET_MARGIN

__all__ = ["head_problem"]

_DISTANCE_LOSSES = ("mse", "mae", "l1", "huber", "smooth_l1")


def _unreachable_targets(s: Signals) -> str:
    """A bounded output activation on regression targets outside its range ('' if none)."""
    bounds = BOUNDED_HEADS.get(s.output_activation or "")
    if bounds is None or s.target_range is None:
        return ""
    lo, hi = bounds
    tmin, tmax = s.target_range
    margin = TARGET_MARGIN * (hi - lo)
    if tmin >= lo - margin and tmax <= hi + margin:
        return ""
    return (
        f"a {s.output_activation} on the output can only give values in ({lo:g}, {hi:g}) but "
        f"the regression targets range from {tmin:.3g} to {tmax:.3g}: the head cannot reach "
        "them, so it saturates and the error stays large (this is the head, not saturation "
        "inside the network)"
    )


def head_problem(s: Signals) -> str:
    """Why the output head cannot fit the labels ('' if it can)."""
    act, loss = s.output_activation, s.loss
    out, classes = s.out_features, s.num_classes
    if loss in _DISTANCE_LOSSES and act in ("softmax", "sigmoid") and (
        s.task == "classification" or classes
    ):
        return (
            f"a {act} head under a {loss} loss on class labels: the distance between "
            "probabilities and labels gives gradients that vanish as the outputs saturate "
            "(and are 0 where a wrong class is sure); use logits with cross-entropy"
        )
    if s.task == "regression":
        return _unreachable_targets(s)
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
    if loss == "cross_entropy" and act in ("softmax", "sigmoid", "tanh") and s.failing:
        return (
            f"cross-entropy applies its own softmax: a {act} before it squashes the "
            "scores and the gradients"
        )
    return ""
