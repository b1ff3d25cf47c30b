"""Learning-rate schedules as pure functions ``step -> lr``, and the plateau controller.

A schedule is a small frozen dataclass with ``__call__(step) -> float`` (step counted from
0): it holds no counter, so resuming a run needs no ``last_epoch`` bookkeeping — call it
with the restored step. Schedules pickle, print their arguments, and compose
(:func:`warmup`, :func:`join`, :class:`Performance`). A schedule with a fixed length
exposes ``total_steps`` so a mismatch with the run is refused before training starts
(:func:`check_total_steps`). :func:`apply` is the one helper that writes the value into an
optimizer's parameter groups.

Every factory validates its arguments and raises ``ValueError`` naming the argument, e.g.
``"power: s must be > 0, got 0"``; :func:`build` (the config's entry point) turns those
into :class:`~trainwell.errors.UserError` ``"schedule.s: ..."``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from ._checks import _ArgError, _int, _num, _step
from .plateau import Performance

__all__ = [
    "Schedule",
    "Constant",
    "Power",
    "Exponential",
    "Piecewise",
    "Cosine",
    "OneCycle",
    "Warmup",
    "Join",
    "performance",
    "constant",
    "power",
    "exponential",
    "piecewise",
    "cosine",
    "one_cycle",
    "warmup",
    "join",
    "Performance",
    "apply",
    "check_total_steps",
    "with_total_steps",
    "SCHEDULES",
    "build",
]


class Schedule:
    """Base of all schedules: ``__call__(step) -> lr``, optional ``momentum`` and length."""

    name: ClassVar[str] = "schedule"
    total_steps: int | None = None  # fixed-length schedules override this

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def momentum(self, step: int) -> float | None:
        """The momentum to use at ``step``, or ``None`` when the schedule leaves it alone."""
        return None


@dataclass(frozen=True)
class Constant(Schedule):
    """The schedule built by :func:`constant` (see its formula)."""

    name: ClassVar[str] = "constant"
    lr: float

    def __post_init__(self) -> None:
        _num("constant", "lr", self.lr, strict=False)

    def __call__(self, step: int) -> float:
        _step(step)
        return float(self.lr)


@dataclass(frozen=True)
class Power(Schedule):
    """The schedule built by :func:`power` (see its formula)."""

    name: ClassVar[str] = "power"
    lr0: float
    s: float
    c: float = 1.0

    def __post_init__(self) -> None:
        _num("power", "lr0", self.lr0)
        _num("power", "s", self.s)
        _num("power", "c", self.c)

    def __call__(self, step: int) -> float:
        return self.lr0 / (1.0 + _step(step) / self.s) ** self.c


@dataclass(frozen=True)
class Exponential(Schedule):
    """The schedule built by :func:`exponential` (see its formula)."""

    name: ClassVar[str] = "exponential"
    lr0: float
    s: float

    def __post_init__(self) -> None:
        _num("exponential", "lr0", self.lr0)
        _num("exponential", "s", self.s)

    def __call__(self, step: int) -> float:
        return self.lr0 * 0.1 ** (_step(step) / self.s)


@dataclass(frozen=True)
class Piecewise(Schedule):
    """The schedule built by :func:`piecewise` (see its formula)."""

    name: ClassVar[str] = "piecewise"
    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        object.__setattr__(self, "values", tuple(self.values))
        if len(self.values) != len(self.boundaries) + 1:
            raise _ArgError(
                "piecewise",
                "values",
                f"must have len(boundaries)+1 = {len(self.boundaries) + 1} entries",
                self.values,
            )
        for b in self.boundaries:
            _int("piecewise", "boundaries", b, low=0)
        if any(b1 <= b0 for b0, b1 in zip(self.boundaries, self.boundaries[1:])):
            raise _ArgError(
                "piecewise", "boundaries", "must be strictly increasing", self.boundaries
            )
        for v in self.values:
            _num("piecewise", "values", v, strict=False)

    def __call__(self, step: int) -> float:
        return float(self.values[bisect.bisect_right(self.boundaries, _step(step))])


def _need_total(s: Schedule) -> int:
    if s.total_steps is None:
        raise ValueError(
            f"{s.name}: total_steps is unset; fill it with with_total_steps(schedule, n)"
        )
    return s.total_steps


@dataclass(frozen=True)
class Cosine(Schedule):
    """The schedule built by :func:`cosine` (see its formula)."""

    name: ClassVar[str] = "cosine"
    lr0: float
    total_steps: int | None = None
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        _num("cosine", "lr0", self.lr0)
        if self.total_steps is not None:
            _int("cosine", "total_steps", self.total_steps, low=1)
        _num("cosine", "final_lr", self.final_lr, strict=False)

    def __call__(self, step: int) -> float:
        t = min(_step(step), total := _need_total(self))
        return self.final_lr + (self.lr0 - self.final_lr) * 0.5 * (
            1.0 + math.cos(math.pi * t / total)
        )


def _interp(points: Sequence[tuple[int, float]], t: int, anneal: str) -> float:
    """Interpolate through ``(step, value)`` anchors; past the last anchor, its value."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if t < x1:  # x1 > t >= x0, so the segment has positive length
            frac = (t - x0) / (x1 - x0)
            if anneal == "cos":
                frac = 0.5 * (1.0 - math.cos(math.pi * frac))
            return y0 + (y1 - y0) * frac
    return points[-1][1]


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The schedule built by :func:`one_cycle` (see its formula)."""

    name: ClassVar[str] = "one_cycle"
    max_lr: float
    total_steps: int | None = None
    start_div: float = 10.0
    final_div: float = 1e3
    warmup_fraction: float = 0.45
    anneal: Literal["linear", "cos"] = "linear"
    momentum_range: tuple[float, float] | None = (0.95, 0.85)

    def __post_init__(self) -> None:
        _num("one_cycle", "max_lr", self.max_lr)
        _num("one_cycle", "start_div", self.start_div, low=1.0, strict=False)
        _num("one_cycle", "final_div", self.final_div, low=1.0, strict=False)
        _num("one_cycle", "warmup_fraction", self.warmup_fraction)
        if self.warmup_fraction > 0.5:
            raise _ArgError(
                "one_cycle",
                "warmup_fraction",
                "must be <= 0.5 (up and down phases)",
                self.warmup_fraction,
            )
        if self.anneal not in ("linear", "cos"):
            raise _ArgError("one_cycle", "anneal", "must be 'linear' or 'cos'", self.anneal)
        if self.momentum_range is not None:
            m = tuple(self.momentum_range)
            if len(m) != 2 or any(
                isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1 for v in m
            ):
                raise _ArgError(
                    "one_cycle",
                    "momentum",
                    "must be None or two numbers in [0, 1)",
                    self.momentum_range,
                )
            object.__setattr__(self, "momentum_range", m)
        if self.total_steps is not None:
            _int("one_cycle", "total_steps", self.total_steps, low=3)
            if self._n_up() < 1:
                raise _ArgError(
                    "one_cycle",
                    "total_steps",
                    f"is too short for warmup_fraction={self.warmup_fraction}",
                    self.total_steps,
                )

    def _n_up(self) -> int:
        total = _need_total(self)
        return min(int(self.warmup_fraction * total), (total - 1) // 2)

    def _anchors(self, up: float, peak: float, end: float) -> list[tuple[int, float]]:
        n = self._n_up()
        return [(0, up), (n, peak), (2 * n, up), (_need_total(self) - 1, end)]

    def __call__(self, step: int) -> float:
        start = self.max_lr / self.start_div
        return _interp(
            self._anchors(start, self.max_lr, start / self.final_div), _step(step), self.anneal
        )

    def momentum(self, step: int) -> float | None:
        """Momentum cycled inversely to the lr: m_start → m_peak → m_start, then held."""
        if self.momentum_range is None:
            return None
        m0, m1 = self.momentum_range
        return _interp(self._anchors(m0, m1, m0), _step(step), self.anneal)


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


def constant(lr: float) -> Schedule:
    """η(t) = lr for every step."""
    return Constant(lr)


def power(lr0: float, s: float, c: float = 1.0) -> Schedule:
    """Power scheduling: η(t) = η0 / (1 + t/s)^c (lr halves after s steps when c = 1).

    Args: lr0: η0 > 0. s: steps scale > 0. c: exponent > 0.
    Raises: ValueError naming the bad argument.
    """
    return Power(lr0, s, c)


def exponential(lr0: float, s: float) -> Schedule:
    """Exponential scheduling: η(t) = η0 · 0.1^(t/s) (divided by 10 every s steps)."""
    return Exponential(lr0, s)


def piecewise(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Piecewise constant: η(t) = values[i] where i = #{b in boundaries : b <= t}.

    So ``values[0]`` holds for t < boundaries[0] and the value switches AT each boundary.
    Raises ValueError unless len(values) == len(boundaries) + 1 and boundaries strictly increase.
    """
    return Piecewise(tuple(boundaries), tuple(values))


def cosine(lr0: float, total_steps: int | None = None, final_lr: float = 0.0) -> Schedule:
    """Cosine decay: η(t) = η_f + (η0 − η_f) · (1 + cos(π·min(t, T)/T)) / 2.

    ``total_steps`` (T) may be left ``None`` and filled later by :func:`with_total_steps`;
    past T the schedule holds ``final_lr``.
    """
    return Cosine(lr0, total_steps, final_lr)


def one_cycle(
    max_lr: float,
    total_steps: int | None = None,
    *,
    start_div: float = 10.0,  # start lr = max_lr / start_div
    final_div: float = 1e3,  # final lr = start lr / final_div
    warmup_fraction: float = 0.45,  # share of the steps of EACH of the up and down phases
    anneal: Literal["linear", "cos"] = "linear",
    momentum: tuple[float, float] | None = (0.95, 0.85),  # (at start, at peak)
) -> Schedule:
    """Smith's 1cycle: up, down symmetrically, then a short final anneal.

    With T = total_steps, n = min(⌊warmup_fraction·T⌋, ⌊(T−1)/2⌋) and η_s = max_lr/start_div:
    η goes η_s → max_lr over steps [0, n] (peak at step n), max_lr → η_s over [n, 2n], then
    η_s → η_s/final_div over [2n, T−1] (the last step gets the final value, held after).
    ``anneal="cos"`` interpolates each phase with a half cosine instead of a line. Momentum
    moves inversely: momentum[0] → momentum[1] → momentum[0], then held (``.momentum(step)``;
    ``None`` leaves the optimizer's momentum alone). Smith 2018, arXiv:1803.09820.

    Raises: ValueError naming the bad argument (T must leave n >= 1).
    """
    return OneCycle(max_lr, total_steps, start_div, final_div, warmup_fraction, anneal, momentum)


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


def performance(factor: float = 0.5, patience: int = 5, min_lr: float = 0.0,
                schedule: Schedule | None = None, **options) -> Performance:
    """The performance (reduce-on-plateau) controller, fed a validation metric per epoch.

    lr = max(schedule(t) · scale, min_lr), where ``scale`` starts at 1 and is multiplied by
    ``factor`` once more than ``patience`` epochs in a row bring no improvement (as in
    torch's ReduceLROnPlateau). It composes with any
    schedule (warm-up, 1cycle, ...); the Trainer's ``plateau=`` argument drives it.

    Example:
        >>> ctl = performance(factor=0.5, patience=2, min_lr=1e-5)
        >>> for val_loss in (1.0, 1.1, 1.2, 1.3):
        ...     _ = ctl.update(val_loss)
        >>> ctl.scale
        0.5
    """
    return Performance(factor=factor, patience=patience, min_lr=min_lr, schedule=schedule,
                       **options)


# The registry and run glue live in their own module; re-exported here so that
# ``trainwell.optim.schedules.build`` etc. keep working. Imported last: it imports the
# classes above.
from .schedule_registry import (  # noqa: E402
    SCHEDULES,
    apply,
    build,
    check_total_steps,
    with_total_steps,
)
