"""The best value of one epoch metric so far: what best-model checkpointing and early
stopping both track.

Improvement: ``value < best − min_delta`` for ``mode="min"``, ``value > best + min_delta``
for ``mode="max"``; the first finite value always improves and a NaN never does, so ties
keep the earlier epoch.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UserError

__all__ = ["MonitoredBest"]

_MODES = ("min", "max")


class MonitoredBest:
    """The best of ``monitor`` seen so far, and its epoch (a base for callbacks).

    Args:
        monitor: a key of the Trainer's epoch metrics, e.g. ``"val_loss"``.
        mode: ``"min"`` (losses) or ``"max"`` (accuracies).
        min_delta: how much better than the best a value must be to count, ≥ 0.

    Raises:
        UserError: an unknown ``mode`` or a negative (or NaN) ``min_delta``.
    """

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in _MODES:
            raise UserError(f"mode: must be 'min' or 'max', got {mode!r}")
        if not float(min_delta) >= 0.0:  # also refuses NaN
            raise UserError(f"min_delta: must be >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.min_delta = str(monitor), mode, float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def value_of(self, metrics: dict[str, Any]) -> float:
        """The monitored value in one epoch's metrics.

        Raises:
            UserError: the metric is not logged by this run (e.g. ``val_*`` without a
                validation split), naming the ones it has.
        """
        if self.monitor not in metrics:
            known = ", ".join(k for k, v in metrics.items()
                              if isinstance(v, int | float) and not isinstance(v, bool))
            raise UserError(f"monitor: {self.monitor!r} is not an epoch metric of this run "
                            f"(it has {known}); pick one of those (val_* needs a validation "
                            "split)")
        return float(metrics[self.monitor])

    def best_state(self) -> dict[str, Any]:
        """``{"monitor", "mode", "best", "best_epoch"}``, JSON-ready."""
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best,
                "best_epoch": self.best_epoch}

    def load_best_state(self, state: dict[str, Any]) -> bool:
        """Restore :meth:`best_state`; False for an empty state (nothing was saved).

        Raises:
            UserError: the state watched another metric or mode.
        """
        if not state:  # a checkpoint written before this callback was added
            return False
        if (state.get("monitor"), state.get("mode")) != (self.monitor, self.mode):
            raise UserError(f"monitor: the checkpoint tracked {state.get('monitor')!r} "
                            f"({state.get('mode')}) but this run monitors {self.monitor!r} "
                            f"({self.mode}); resume with the run's own settings")
        self.best = None if state.get("best") is None else float(state["best"])
        self.best_epoch = None if state.get("best_epoch") is None else int(state["best_epoch"])
        return True
