"""Argument checks shared by the schedules and the plateau controller.

Each check raises :class:`_ArgError`, a ``ValueError`` whose ``arg`` names the bad argument
so :func:`trainwell.optim.schedules.build` can report it as ``schedule.<arg>``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["_ArgError", "_num", "_int", "_step"]


class _ArgError(ValueError):
    """A bad schedule argument; ``arg`` names it so :func:`build` can say ``schedule.<arg>``.

    The message reads ``"<fn>: <arg> <rule>, got <value>"``, e.g.
    ``"power: s must be > 0, got 0"``.
    """

    def __init__(self, fn: str, arg: str, rule: str, value: Any) -> None:
        super().__init__(f"{fn}: {arg} {rule}, got {value!r}")
        self.arg = arg


def _num(fn: str, arg: str, v: Any, *, low: float = 0.0, strict: bool = True) -> None:
    """Require a finite real ``v`` with ``v > low`` (``strict``) or ``v >= low``.

    Raises:
        _ArgError: ``v`` is not a finite int/float (bools refused) or is out of range.
    """
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _ArgError(fn, arg, "must be a finite number", v)
    if v < low or (strict and v == low):
        raise _ArgError(fn, arg, f"must be {'>' if strict else '>='} {low:g}", v)


def _int(fn: str, arg: str, v: Any, *, low: int) -> None:
    """Require an integer ``v >= low`` (bools refused).

    Raises:
        _ArgError: naming ``arg``.
    """
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise _ArgError(fn, arg, f"must be an integer >= {low}", v)


def _step(step: int) -> int:
    """Return ``step`` unchanged when it is >= 0 (schedules count steps from 0).

    Raises:
        ValueError: ``"schedule step must be >= 0, got -1"``.
    """
    if step < 0:
        raise ValueError(f"schedule step must be >= 0, got {step}")
    return step
