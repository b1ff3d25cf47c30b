"""The yardstick: the user's architecture trained with a known-good recipe, and the verdict.

A repair that adds 2 points of validation accuracy is often still 5–10 points below the same
network trained without the fault (DESIGN.md, "Measured facts"). So the doctor also trains
the config's architecture (same model kind, depth, width, activation, data, budget and
seed) with a known-good recipe — :func:`yardstick_patch` — and calls a repair *repaired*
only when the repaired run ends within :data:`WITHIN_ACCURACY` of it (classification) or
with a validation loss within :data:`WITHIN_LOSS` of it (regression); see :func:`judge`.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import apply_patch
from ..errors import UserError

__all__ = [
    "MIN_GAIN",
    "WITHIN_ACCURACY",
    "WITHIN_LOSS",
    "YARDSTICK_LR",
    "judge",
    "verdict",
    "yardstick_config",
    "yardstick_failed",
    "yardstick_patch",
]

MIN_GAIN = 0.02  # validation accuracy points a repair must add to count as "improved"
WITHIN_ACCURACY = 0.02  # "repaired": final val accuracy ≥ yardstick's − 2 points
WITHIN_LOSS = 0.10  # regression "repaired": final val loss ≤ 1.1 × the yardstick's;
# "improved": val loss ≤ 0.9 × the diagnostic's (the same 10%, the other way)
YARDSTICK_LR = 3e-3  # trainwell's usual Adam rate (the 1cycle peak)
# Without a yardstick that learned, "repaired" asks the repaired run itself to close this share
# of the gap from chance to 100% at the full budget (0.82 on 10 classes: the repaired deep
# sigmoid nets reach 0.89–0.94; runs once called repaired on a yardstick at chance reached
# 0.28 and 0.095; a 1-D CNN on MNIST-1D at 0.81 against 0.845 healthy stays improved).
HEALTHY_SHARE = 0.8
RECIPE_DROPOUT, RECIPE_L2, RECIPE_L1 = 0.3, 1e-3, 1e-4  # the recipe's regularization caps
YARDSTICK_MIN_SHARE = 0.25  # a recipe below chance + 25% of the gap to 1 "failed to learn"
SANE_ADAM_LR = (1e-4, 1e-2)  # an Adam rate the config keeps; outside it is itself the fault
_ADAM = ("adam", "adamw", "nadam", "adamax")


def yardstick_patch(config: Any, activation: str | None = None) -> dict[str, Any]:
    """The known-good recipe as a config patch on ``config``'s architecture.

    Auto init (Glorot/He/LeCun by activation, biases at zero), standardized inputs at their own scale
    (``data.input_scale = 1``: a scale is a fault injected after standardizing), a logits
    head with the task's loss, Adam at 3e-3 (the config's rate if it already uses an Adam
    variant at a rate in :data:`SANE_ADAM_LR`: Adam at 1e-10 or at 1 is the fault, not the
    recipe) and a 1cycle schedule. Model kind, sizes, activation, batch norm, batch size,
    epochs and seed stay the config's, and so do dropout and penalties up to the usual
    strengths (dropout 0.3, λ2 1e-3, λ1 1e-4: beyond them they can be the fault). A user's model
    (``model.target``) keeps its head and loss: trainwell cannot edit its ``forward``; it is
    re-initialized (``model.reinit``) by ``activation``, the hidden activation the probes saw.
    """
    adam = config.optim.name in _ADAM
    keep_lr = adam and SANE_ADAM_LR[0] <= config.optim.lr <= SANE_ADAM_LR[1]
    head: dict[str, Any] = {
        "model.output_activation": None,
        "model.out_features": None,
        "train.loss": "auto",
    }
    if config.model.target is not None:
        # A user's model keeps its own head (its forward decides the output), so it keeps
        # the loss that fits that output: "auto" on one sigmoid output under BCE would be
        # cross-entropy over one class (IndexError: Target 1 is out of bounds). Its init is
        # its constructor's: the recipe re-initializes it by walking its modules (He/Glorot
        # by the hidden activation the probes saw, ``activation``; biases at zero).
        head = {
            "model.reinit": True,
            "model.activation": activation or config.model.activation,
        }
    reg = config.regularization
    return {
        "model.init": "auto",
        "model.bias_init": "zeros",  # biases at −3 kill ReLUs under any init
        "model.head_init": None,
        # usual strengths at most: dropout 0.9 or λ2 0.5 is a fault, not a recipe
        "model.dropout": min(config.model.dropout, RECIPE_DROPOUT),
        "regularization.l2": min(reg.l2, RECIPE_L2),
        "regularization.l1": min(reg.l1, RECIPE_L1),
        "data.standardize": True,
        "data.input_scale": 1.0,
        **head,
        "optim.name": config.optim.name if adam else "adam",
        "optim.lr": config.optim.lr if keep_lr else YARDSTICK_LR,
        "optim.momentum": None,
        "optim.beta": None,
        "schedule.name": "one_cycle",
        "schedule.params": {},
        "schedule.unit": "step",
    }


def yardstick_config(config: Any, activation: str | None = None) -> Any | None:
    """``config`` with :func:`yardstick_patch` applied, or None where the architecture
    does not allow the recipe (the patched config does not validate)."""
    try:
        return apply_patch(config, yardstick_patch(config, activation))
    except (UserError, ValueError):
        return None


def yardstick_failed(yard: dict[str, Any], num_classes: int | None) -> str:
    """Why the yardstick is no bar ('' when it is one).

    It failed to build or train (``yard["failed"]``), or, on a classification task, it
    closed less than :data:`YARDSTICK_MIN_SHARE` of the gap from chance (1/classes) to 1:
    e.g. a user's model whose own init the recipe cannot change stayed at 0.25 on 10
    classes, and a repair at 0.28 was "within 2 points" of it.
    """
    if yard.get("failed"):
        return str(yard["failed"])
    acc = _num(yard, "val_accuracy")
    if acc is None or not num_classes or num_classes < 2:
        return ""
    chance = 1.0 / num_classes
    bar = chance + YARDSTICK_MIN_SHARE * (1.0 - chance)
    if acc < bar:
        return (f"the recipe itself stayed near chance (validation accuracy {acc:.3f}, chance "
                f"{chance:.3f}, bar {bar:.3f}): it cannot judge a repair")
    return ""


def _num(m: dict[str, Any] | None, key: str) -> float | None:
    v = (m or {}).get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def judge(
    before: dict[str, Any], after: dict[str, Any], yardstick: dict[str, Any] | None
) -> str:
    """The verdict on a repaired run: ``"repaired"``, ``"improved"`` or ``"unresolved"``.

    Classification (validation accuracy known): *repaired* when
    ``after ≥ yardstick − WITHIN_ACCURACY``; *improved* when ``after ≥ before + MIN_GAIN``.
    Regression (validation loss only): *repaired* when ``after ≤ (1 + WITHIN_LOSS) ·
    yardstick``; *improved* when ``after ≤ (1 − WITHIN_LOSS) · before`` (or ``before`` was
    not finite). Without a yardstick score the old criterion stands: a gain of
    ``MIN_GAIN`` (accuracy) or ``WITHIN_LOSS`` (loss) is *repaired*. A yardstick marked
    ``"failed"`` (it crashed, or stayed near chance: :func:`yardstick_failed`) is no bar:
    a gain is then *improved*, and *repaired* only where ``after`` itself closes
    :data:`HEALTHY_SHARE` of the gap from chance (``yardstick["chance_accuracy"]``) to 100%.

    Args:
        before: metrics of the diagnostic run (``val_accuracy``, ``val_loss``).
        after: metrics of the repaired run at the full budget.
        yardstick: metrics of the yardstick run, or None.
    """
    if yardstick is not None and yardstick.get("failed"):
        # A recipe that failed (or stayed near chance) is no bar. A gain is "repaired" only
        # where the run itself learned like a healthy one (HEALTHY_SHARE of the gap from
        # chance to 100%), else "improved".
        gain = judge(before, after, None)
        if gain != "repaired":
            return "unresolved"
        acc, chance = _num(after, "val_accuracy"), _num(yardstick, "chance_accuracy")
        if acc is not None and chance is not None and acc >= chance + HEALTHY_SHARE * (
            1.0 - chance
        ):
            return "repaired"
        return "improved"
    acc = _num(after, "val_accuracy")
    if acc is not None:
        ref = _num(yardstick, "val_accuracy")
        base = _num(before, "val_accuracy")
        gained = base is None or acc >= base + MIN_GAIN
        if ref is not None:
            if acc >= ref - WITHIN_ACCURACY:
                return "repaired"
            return "improved" if gained else "unresolved"
        return "repaired" if gained else "unresolved"
    loss = _num(after, "val_loss")
    if loss is None:
        return "unresolved"
    ref_loss = _num(yardstick, "val_loss")
    base_loss = _num(before, "val_loss")
    gained = base_loss is None or loss <= (1 - WITHIN_LOSS) * base_loss
    if ref_loss is not None:
        if loss <= (1 + WITHIN_LOSS) * ref_loss:
            return "repaired"
        return "improved" if gained else "unresolved"
    return "repaired" if gained else "unresolved"


def verdict(
    before: dict[str, Any],
    trial: dict[str, Any],
    after: dict[str, Any],
    yardstick: dict[str, Any] | None,
) -> str:
    """The doctor's verdict on a kept repair: it gained early, and its full run is healthy.

    *repaired* when the repair gained at the short budget (:func:`judge` of ``trial``:
    within tolerance of the yardstick there, or :data:`MIN_GAIN` above the broken run) **and**
    the repaired run continued to the full budget is within tolerance of the yardstick
    (:func:`judge` of ``after``). The yardstick is a complete run of the recipe at the
    short budget (its schedule annealed within it), the best the doctor's time budget
    affords; a recipe trained longer does at least as well, so the full-budget test is a
    lower bound, and the early test only asks for a gain: at the short budget the repaired
    run is the first part of a full-length schedule, which a complete short run outpaces.
    Otherwise *improved* when ``after`` still beats ``before`` by :data:`MIN_GAIN`
    (accuracy; regression: loss 10% lower) after gaining early, else *unresolved*.

    Args:
        before: metrics of the diagnostic run at the short budget.
        trial: metrics of the repaired run at the same short budget.
        after: metrics of the repaired run continued to the full budget.
        yardstick: metrics of the recipe trained for the short budget, or None.
    """
    short = judge(before, trial, yardstick)
    if short in ("repaired", "improved") and judge(before, after, yardstick) == "repaired":
        return "repaired"
    held = judge(before, after, None) == "repaired"  # still MIN_GAIN above the broken run
    return "improved" if short in ("repaired", "improved") and held else "unresolved"
