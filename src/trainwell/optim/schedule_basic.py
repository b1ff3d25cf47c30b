"""The basic schedules, each a pure function ``step -> lr``, and their base class.

A schedule is a small frozen dataclass with ``__call__(step) -> float`` (step counted from
0): it holds no counter, so resuming a run needs no ``last_epoch`` bookkeeping — call it
with the restored step. Two of its arguments may be left unset and are filled from the run:
``total_steps`` (the run's length, :func:`~trainwell.optim.schedules.with_total_steps`) and
the base learning rate, the argument named by the class's ``base_arg`` (``lr``, ``lr0`` or
``max_lr``; :func:`~trainwell.optim.schedules.with_base_lr`). Calling a schedule with either
still unset raises ``ValueError``. The public face is :mod:`trainwell.optim.schedules`.

Every factory validates its arguments and raises ``ValueError`` naming the argument, e.g.
``"power: s must be > 0, got 0"``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from ._checks import _ArgError, _int, _num, _step

__all__ = [
    "Schedule",
    "Constant",
    "Power",
    "Exponential",
    "Piecewise",
    "Cosine",
    "OneCycle",
    "constant",
    "power",
    "exponential",
    "piecewise",
    "cosine",
    "one_cycle",
]


class Schedule:
    """Base of all schedules: ``__call__(step) -> lr``, optional ``momentum`` and length.

    ``base_arg`` names the field holding the schedule's base (start or peak) learning rate,
    or is None when the schedule has none (``piecewise`` lists every value itself); a base
    left as None is filled from the optimizer by ``with_base_lr``.
    """

    name: ClassVar[str] = "schedule"
    base_arg: ClassVar[str | None] = None
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
    base_arg: ClassVar[str | None] = "lr"
    lr: float | None = None

    def __post_init__(self) -> None:
        _check_base(self, strict=False)

    def __call__(self, step: int) -> float:
        _step(step)
        return _base(self)


@dataclass(frozen=True)
class Power(Schedule):
    """The schedule built by :func:`power` (see its formula)."""

    name: ClassVar[str] = "power"
    base_arg: ClassVar[str | None] = "lr0"
    lr0: float | None
    s: float
    c: float = 1.0

    def __post_init__(self) -> None:
        _check_base(self)
        _num("power", "s", self.s)
        _num("power", "c", self.c)

    def __call__(self, step: int) -> float:
        return _base(self) / (1.0 + _step(step) / self.s) ** self.c


@dataclass(frozen=True)
class Exponential(Schedule):
    """The schedule built by :func:`exponential` (see its formula)."""

    name: ClassVar[str] = "exponential"
    base_arg: ClassVar[str | None] = "lr0"
    lr0: float | None
    s: float

    def __post_init__(self) -> None:
        _check_base(self)
        _num("exponential", "s", self.s)

    def __call__(self, step: int) -> float:
        return _base(self) * 0.1 ** (_step(step) / self.s)


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


def _base(s: Schedule) -> float:
    """The schedule's base lr; ValueError while it is unset (not yet filled)."""
    value = getattr(s, s.base_arg or "", None)
    if value is None:
        raise ValueError(
            f"{s.name}: {s.base_arg} is unset; fill it with with_base_lr(schedule, lr), or let "
            "schedules.apply / the Trainer take it from the optimizer's learning rate"
        )
    return float(value)


def _check_base(s: Schedule, *, strict: bool = True) -> None:
    value = getattr(s, s.base_arg or "")
    if value is not None:
        _num(s.name, s.base_arg or "", value, strict=strict)


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
    base_arg: ClassVar[str | None] = "lr0"
    lr0: float | None = None
    total_steps: int | None = None
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_base(self)
        if self.total_steps is not None:
            _int("cosine", "total_steps", self.total_steps, low=1)
        _num("cosine", "final_lr", self.final_lr, strict=False)

    def __call__(self, step: int) -> float:
        t = min(_step(step), total := _need_total(self))
        return self.final_lr + (_base(self) - self.final_lr) * 0.5 * (
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
    base_arg: ClassVar[str | None] = "max_lr"
    max_lr: float | None = None
    total_steps: int | None = None
    start_div: float = 10.0
    final_div: float = 1e3
    warmup_fraction: float = 0.45
    anneal: Literal["linear", "cos"] = "linear"
    momentum_range: tuple[float, float] | None = (0.95, 0.85)

    def __post_init__(self) -> None:
        _check_base(self)
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
        peak = _base(self)
        start = peak / self.start_div
        return _interp(self._anchors(start, peak, start / self.final_div), _step(step), self.anneal)

    def momentum(self, step: int) -> float | None:
        """Momentum cycled inversely to the lr: m_start → m_peak → m_start, then held."""
        if self.momentum_range is None:
            return None
        m0, m1 = self.momentum_range
        return _interp(self._anchors(m0, m1, m0), _step(step), self.anneal)


def constant(lr: float | None = None) -> Schedule:
    """η(t) = lr for every step (``lr=None``: the optimizer's learning rate, filled later)."""
    return Constant(lr)


def power(lr0: float | None, s: float, c: float = 1.0) -> Schedule:
    """Power scheduling: η(t) = η0 / (1 + t/s)^c (lr halves after s steps when c = 1).

    Args: lr0: η0 > 0, or None for the optimizer's lr. s: steps scale > 0. c: exponent > 0.
    Raises: ValueError naming the bad argument.
    """
    return Power(lr0, s, c)


def exponential(lr0: float | None, s: float) -> Schedule:
    """Exponential scheduling: η(t) = η0 · 0.1^(t/s) (divided by 10 every s steps).

    ``lr0=None`` takes η0 from the optimizer's learning rate (see ``with_base_lr``).
    """
    return Exponential(lr0, s)


def piecewise(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Piecewise constant: η(t) = values[i] where i = #{b in boundaries : b <= t}.

    So ``values[0]`` holds for t < boundaries[0] and the value switches AT each boundary.
    Raises ValueError unless len(values) == len(boundaries) + 1 and boundaries strictly increase.
    """
    return Piecewise(tuple(boundaries), tuple(values))


def cosine(
    lr0: float | None = None, total_steps: int | None = None, final_lr: float = 0.0
) -> Schedule:
    """Cosine decay: η(t) = η_f + (η0 − η_f) · (1 + cos(π·min(t, T)/T)) / 2.

    ``total_steps`` (T) may be left ``None`` and filled from the run's length
    (``with_total_steps``, done by the Trainer), ``lr0`` likewise from the optimizer's
    learning rate (``with_base_lr``); past T the schedule holds ``final_lr`` (an lr, not a
    factor).
    """
    return Cosine(lr0, total_steps, final_lr)


def one_cycle(
    max_lr: float | None = None,
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
    ``None`` leaves the optimizer's momentum alone). ``max_lr`` and ``total_steps`` left
    ``None`` are filled from the optimizer's lr and the run's length by the Trainer.
    Smith 2018, arXiv:1803.09820.

    Raises: ValueError naming the bad argument (T must leave n >= 1).
    """
    return OneCycle(max_lr, total_steps, start_div, final_div, warmup_fraction, anneal, momentum)

