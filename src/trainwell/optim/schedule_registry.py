"""Schedules by name, and the glue between a schedule and a run.

:func:`build` is the config's entry point (``[schedule] name = "power"`` plus its
arguments, bad ones reported as ``schedule.<arg>``); :func:`with_total_steps` and
:func:`check_total_steps` fit a fixed-length schedule to the run's length; :func:`apply`
writes a schedule's value into an optimizer. All are re-exported by
:mod:`trainwell.optim.schedules`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import UserError
from ._checks import _ArgError, _int
from .plateau import Performance
from .schedules import (
    Cosine,
    Join,
    OneCycle,
    Warmup,
    constant,
    cosine,
    exponential,
    one_cycle,
    piecewise,
    power,
)

__all__ = ["apply", "check_total_steps", "with_total_steps", "SCHEDULES", "build"]


def with_total_steps(schedule: Any, n: int) -> Any:
    """A copy of ``schedule`` with an unset ``total_steps`` filled so the whole equals ``n``.

    Schedules whose length is already fixed (or that have none) are returned unchanged;
    :func:`check_total_steps` then reports any mismatch.
    """
    _int("with_total_steps", "n", n, low=1)
    if isinstance(schedule, Cosine | OneCycle) and schedule.total_steps is None:
        return dataclasses.replace(schedule, total_steps=n)
    if isinstance(schedule, Warmup) and schedule.total_steps is None:
        inner_n = n - schedule.warmup_steps if schedule.shift else n
        return dataclasses.replace(
            schedule, schedule=with_total_steps(schedule.schedule, max(inner_n, 1))
        )
    if isinstance(schedule, Join) and schedule.total_steps is None:
        last = with_total_steps(schedule.schedules[-1], max(n - schedule.boundaries[-1], 1))
        return dataclasses.replace(schedule, schedules=(*schedule.schedules[:-1], last))
    if isinstance(schedule, Performance) and schedule.schedule is not None:
        out = copy.copy(schedule)
        out.schedule = with_total_steps(schedule.schedule, n)
        return out
    return schedule


def check_total_steps(
    schedule: Any,
    total_steps: int,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> None:
    """Refuse a fixed-length schedule whose length differs from the run's, before training.

    Raises:
        UserError: ``"schedule.total_steps: one_cycle was built for 1000 steps but the run
        has 2260 (20 epochs × 113 batches); set total_steps=2260 or leave it unset"``.
    """
    built = getattr(schedule, "total_steps", None)
    if built is None or built == total_steps:
        return
    how = f" ({epochs} epochs × {steps_per_epoch} batches)" if epochs and steps_per_epoch else ""
    name = getattr(schedule, "name", type(schedule).__name__)
    raise UserError(
        f"schedule.total_steps: {name} was built for {built} steps but the run has "
        f"{total_steps}{how}; set total_steps={total_steps} or leave it unset"
    )


def apply(optimizer: Any, schedule: Callable[[int], float], step: int, scale: float = 1.0) -> float:
    """Write the schedule's value into every parameter group of ``optimizer``.

    group["lr"] = schedule(step) · scale · group.get("lr_scale", 1.0) (``lr_scale`` gives
    discriminative learning rates). When ``schedule.momentum(step)`` is not None it writes
    group["momentum"] = m if the group has that key, else group["betas"] = (m, β2).

    Returns:
        The lr written for the first group.
    """
    lr = float(schedule(step)) * scale
    mom_fn = getattr(schedule, "momentum", None)
    m = mom_fn(step) if callable(mom_fn) else None
    first = None
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        first = group["lr"] if first is None else first
        if m is not None:
            if "momentum" in group:
                group["momentum"] = m
            elif "betas" in group:
                group["betas"] = (m, group["betas"][1])
    return lr if first is None else first


SCHEDULES: dict[str, Callable[..., Any]] = {
    "constant": constant,
    "power": power,
    "exponential": exponential,
    "piecewise": piecewise,
    "cosine": cosine,
    "one_cycle": one_cycle,
}


def _performance(lr: float, **controller: Any) -> Performance:
    return Performance(schedule=constant(lr), **controller)


def build(name: str, **kw: Any) -> Any:
    """Build the schedule registered as ``name`` (or ``"performance"``: a plateau controller
    over ``constant(lr)``) from config keyword arguments.

    Raises:
        UserError: ``"schedule.<arg>: ..."`` for an unknown name, unknown or missing
        argument, or a bad value.
    """
    factory = SCHEDULES.get(name) or (_performance if name == "performance" else None)
    if factory is None:
        raise UserError(
            f"schedule.name: unknown schedule {name!r}; choose one of {sorted([*SCHEDULES, 'performance'])}"
        )
    sig = inspect.signature(factory)
    valid = [
        p for p in sig.parameters if sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    if name == "performance":
        valid += [
            f.name for f in dataclasses.fields(Performance) if f.init and f.name != "schedule"
        ]
    for key in kw:
        if key not in valid:
            raise UserError(
                f"schedule.{key}: unknown argument for {name}; valid: {', '.join(valid)}"
            )
    for p in sig.parameters.values():
        if (
            p.default is inspect.Parameter.empty
            and p.kind is not inspect.Parameter.VAR_KEYWORD
            and p.name not in kw
        ):
            raise UserError(f"schedule.{p.name}: required by {name}; set it")
    if name == "piecewise":
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    if name == "one_cycle" and isinstance(kw.get("momentum"), list):
        kw["momentum"] = tuple(kw["momentum"])
    try:
        return factory(**kw)
    except _ArgError as e:
        raise UserError(f"schedule.{e.arg}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"schedule: {name}: {e}") from None
