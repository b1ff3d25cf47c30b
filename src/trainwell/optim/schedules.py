"""Learning-rate schedules as pure functions ``step -> lr``, and the plateau controller.

A schedule is a small frozen dataclass with ``__call__(step) -> float`` (step counted from
0): it holds no counter, so resuming a run needs no ``last_epoch`` bookkeeping — call it
with the restored step. Schedules pickle, print their arguments, and compose
(:func:`warmup`, :func:`join`, :class:`Performance`). A schedule with a fixed length
exposes ``total_steps`` so a mismatch with the run is refused before training starts
(:func:`check_total_steps`). :func:`apply` is the one helper that writes the value into an
optimizer's parameter groups. The composing schedules live in :mod:`.schedule_compose` and
the registry in :mod:`.schedule_registry`; both are re-exported here.

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


# Composition (warm-up, join, the plateau controller) and the registry with the run glue
# live in their own modules; re-exported here so that ``trainwell.optim.schedules.warmup``,
# ``...build`` etc. keep working. Imported last: they import the classes above, and the
# registry imports the composition classes.
from .schedule_compose import Join, Warmup, join, performance, warmup  # noqa: E402
from .schedule_registry import (  # noqa: E402
    SCHEDULES,
    apply,
    build,
    check_total_steps,
    with_total_steps,
)
