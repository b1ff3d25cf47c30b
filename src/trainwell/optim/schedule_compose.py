"""Schedules that wrap other schedules: a linear warm-up, a chain, the plateau controller.

:func:`warmup` puts a linear ramp in front of any schedule, :func:`join` runs schedules one
after another (each on its own clock), and :func:`performance` builds the reduce-on-plateau
controller that scales whatever schedule it is given. All are re-exported by
:mod:`trainwell.optim.schedules`; the :class:`Schedule` base comes from
:mod:`.schedule_basic`, so the arrows run basic ← compose ← registry ← schedules.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._checks import _ArgError, _int, _num, _step
from .plateau import Performance
from .schedule_basic import Schedule

__all__ = ["Warmup", "Join", "warmup", "join", "performance"]


@dataclass(frozen=True)
class Warmup(Schedule):
    """The schedule built by :func:`warmup` (see its formula)."""

    name: ClassVar[str] = "warmup"
    schedule: Schedule
    warmup_steps: int
    start_lr: float = 0.0
    shift: bool = False

    def __post_init__(self) -> None:
        if not callable(self.schedule):
            raise _ArgError("warmup", "schedule", "must be a callable step -> lr", self.schedule)
        _int("warmup", "warmup_steps", self.warmup_steps, low=1)
        _num("warmup", "start_lr", self.start_lr, strict=False)

    @property
    def total_steps(self) -> int | None:  # type: ignore[override]
        inner = getattr(self.schedule, "total_steps", None)
        return None if inner is None else inner + (self.warmup_steps if self.shift else 0)

    def _inner_step(self, step: int) -> int:
        return step - self.warmup_steps if self.shift else step

    def __call__(self, step: int) -> float:
        w = self.warmup_steps
        if _step(step) >= w:
            return float(self.schedule(self._inner_step(step)))
        target = float(self.schedule(0 if self.shift else w))
        return self.start_lr + (target - self.start_lr) * step / w

    def momentum(self, step: int) -> float | None:
        """The wrapped schedule's momentum (at its step 0 during a shifted warm-up)."""
        inner = getattr(self.schedule, "momentum", None)
        return None if inner is None else inner(max(self._inner_step(_step(step)), 0))


@dataclass(frozen=True)
class Join(Schedule):
    """The schedule built by :func:`join` (see its formula)."""

    name: ClassVar[str] = "join"
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        if len(self.schedules) != len(self.boundaries) + 1:
            raise _ArgError(
                "join", "schedules", "must number len(boundaries)+1", len(self.schedules)
            )
        for b in self.boundaries:
            _int("join", "boundaries", b, low=1)
        if any(b1 <= b0 for b0, b1 in zip(self.boundaries, self.boundaries[1:])):
            raise _ArgError("join", "boundaries", "must be strictly increasing", self.boundaries)

    @property
    def total_steps(self) -> int | None:  # type: ignore[override]
        last = getattr(self.schedules[-1], "total_steps", None)
        return None if last is None else self.boundaries[-1] + last if self.boundaries else last

    def _locate(self, step: int) -> tuple[Schedule, int]:
        i = bisect.bisect_right(self.boundaries, _step(step))
        return self.schedules[i], step - (self.boundaries[i - 1] if i else 0)

    def __call__(self, step: int) -> float:
        s, local = self._locate(step)
        return float(s(local))

    def momentum(self, step: int) -> float | None:
        """The momentum of the schedule active at ``step``, if it has one."""
        s, local = self._locate(step)
        m = getattr(s, "momentum", None)
        return None if m is None else m(local)


def warmup(
    schedule: Schedule, warmup_steps: int, start_lr: float = 0.0, *, shift: bool = False
) -> Schedule:
    """Linear warm-up in front of ``schedule``.

    For t < W: η(t) = start_lr + (target − start_lr)·t/W. With ``shift=False`` (default) the
    wrapped schedule keeps its own clock: target = schedule(W) and η(t) = schedule(t) for
    t >= W, so the warm-up replaces its first W steps and the total length is unchanged.
    With ``shift=True`` it starts after the warm-up: target = schedule(0), η(t) = schedule(t−W)
    for t >= W, and a fixed length grows by W.
    """
    return Warmup(schedule, warmup_steps, start_lr, shift)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i-1]`` on, each seeing steps counted from its start.

    η(t) = schedules[i](t − boundaries[i−1]) with i = #{b <= t} (boundaries[−1] := 0).
    """
    return Join(tuple(schedules), tuple(boundaries))


def performance(
    factor: float = 0.5,
    patience: int = 5,
    min_lr: float = 0.0,
    schedule: Schedule | None = None,
    **options: Any,
) -> Performance:
    """The performance (reduce-on-plateau) controller, fed a validation metric per epoch.

    lr = max(schedule(t) · scale, min_lr), where ``scale`` starts at 1 and is multiplied by
    ``factor`` once more than ``patience`` epochs in a row bring no improvement (as in
    torch's ReduceLROnPlateau). It composes with any schedule (warm-up, 1cycle, ...; None:
    the optimizer's own lr); give it to the Trainer as ``schedule=`` or ``plateau=``.

    Example:
        >>> ctl = performance(factor=0.5, patience=2, min_lr=1e-5)
        >>> for val_loss in (1.0, 1.1, 1.2, 1.3):
        ...     _ = ctl.update(val_loss)
        >>> ctl.scale
        0.5
    """
    return Performance(
        factor=factor, patience=patience, min_lr=min_lr, schedule=schedule, **options
    )
