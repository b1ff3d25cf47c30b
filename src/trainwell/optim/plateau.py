"""The performance (reduce-on-plateau) controller, composable with any schedule.

Fed the validation metric at each epoch end, it keeps a multiplier ``scale`` that
:func:`trainwell.optim.schedules.apply` (the one writer of the learning rate) applies to
whatever the schedule gives: η(t) = lr_scale · max(schedule(t) · scale, min_lr), the
schedule being the optimizer's own lr when there is none.
Its counters are saved in checkpoints (:meth:`Performance.state_dict`) so a resumed run
continues exactly. Re-exported as ``trainwell.optim.schedules.Performance``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._checks import _ArgError, _int, _num

__all__ = ["Performance"]


@dataclass(eq=False)
class Performance:
    """Performance scheduling: the plateau controller, fed a validation metric each epoch.

    It keeps a multiplier ``scale`` (1.0 at first) and multiplies it by ``factor`` after
    ``patience`` epochs in a row without improvement, then waits ``cooldown`` epochs before
    counting again. Improvement means metric < best − threshold·|best| (mode "min") or
    metric > best + threshold·|best| (mode "max"); NaN never improves. It composes with any
    schedule: η(t) = max(schedule(t) · scale, min_lr), which ``__call__`` returns when a
    ``schedule`` is given (so a warm-up or 1cycle keeps its shape, scaled).

    Args:
        factor: multiplier in (0, 1) applied at each reduction.
        patience: epochs without improvement tolerated before a reduction (>= 0).
        min_lr: floor of the learning rate (>= 0).
        mode: "min" for a loss, "max" for an accuracy.
        threshold: relative improvement needed (>= 0).
        cooldown: epochs after a reduction during which bad epochs are not counted.
        schedule: the schedule to scale (None: ``schedules.apply`` scales the optimizer's
            own lr; calling the controller then raises).

    Raises:
        ValueError naming the bad argument.

    It follows the schedule protocol of :mod:`trainwell.optim.schedules` (``__call__``,
    ``momentum``, ``total_steps``, ``name``) without inheriting from ``Schedule``, so this
    module depends on the argument checks only.
    """

    name: ClassVar[str] = "performance"
    factor: float = 0.5
    patience: int = 5
    min_lr: float = 0.0
    mode: Literal["min", "max"] = "min"
    threshold: float = 1e-4
    cooldown: int = 0
    schedule: Any = None
    scale: float = dataclasses.field(default=1.0, init=False)
    best: float = dataclasses.field(default=math.nan, init=False)
    num_bad_epochs: int = dataclasses.field(default=0, init=False)
    cooldown_left: int = dataclasses.field(default=0, init=False)
    num_reductions: int = dataclasses.field(default=0, init=False)

    _STATE: ClassVar[tuple[str, ...]] = (
        "scale",
        "best",
        "num_bad_epochs",
        "cooldown_left",
        "num_reductions",
    )

    def __post_init__(self) -> None:
        _num("performance", "factor", self.factor)
        if self.factor >= 1:
            raise _ArgError("performance", "factor", "must be < 1", self.factor)
        _int("performance", "patience", self.patience, low=0)
        _num("performance", "min_lr", self.min_lr, strict=False)
        if self.mode not in ("min", "max"):
            raise _ArgError("performance", "mode", "must be 'min' or 'max'", self.mode)
        _num("performance", "threshold", self.threshold, strict=False)
        _int("performance", "cooldown", self.cooldown, low=0)
        if self.schedule is not None and not callable(self.schedule):
            raise _ArgError(
                "performance", "schedule", "must be None or a callable step -> lr", self.schedule
            )

    @property
    def total_steps(self) -> int | None:
        """The wrapped schedule's fixed length, if any."""
        return getattr(self.schedule, "total_steps", None)

    def _improved(self, metric: float) -> bool:
        if math.isnan(metric):
            return False
        if math.isnan(self.best):
            return True
        margin = self.threshold * abs(self.best)
        return metric < self.best - margin if self.mode == "min" else metric > self.best + margin

    def update(self, metric: float) -> bool:
        """Record one epoch's validation ``metric``; return True when ``scale`` was reduced."""
        metric = float(metric)
        if self._improved(metric):
            self.best, self.num_bad_epochs = metric, 0
        elif self.cooldown_left > 0:
            self.cooldown_left -= 1
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            self.scale *= self.factor
            self.num_reductions += 1
            self.num_bad_epochs, self.cooldown_left = 0, self.cooldown
            return True
        return False

    def lr(self, base_lr: float) -> float:
        """max(base_lr · scale, min_lr): the controller applied to any schedule's value."""
        return max(base_lr * self.scale, self.min_lr)

    def __call__(self, step: int) -> float:
        if self.schedule is None:
            raise ValueError("performance: no schedule to scale; pass schedule= or use .lr(value)")
        return self.lr(float(self.schedule(step)))

    def momentum(self, step: int) -> float | None:
        """The wrapped schedule's momentum, if it has one."""
        m = getattr(self.schedule, "momentum", None)
        return None if m is None else m(step)

    def state_dict(self) -> dict[str, float | int]:
        """The controller's counters, for an exact resume (JSON-safe numbers)."""
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Restore counters saved by :meth:`state_dict`."""
        missing = [k for k in self._STATE if k not in state]
        if missing:
            raise ValueError(f"performance.load_state_dict: missing keys {missing}")
        for k in self._STATE:
            setattr(self, k, type(getattr(self, k))(state[k]))
