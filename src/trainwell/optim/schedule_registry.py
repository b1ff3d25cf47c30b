"""Schedules by name, and the glue between a schedule and a run.

:func:`build` is the config's entry point (``[schedule] name = "power"`` plus its
arguments, bad ones reported as ``schedule.<arg>``); :func:`with_total_steps` and
:func:`check_total_steps` fit a fixed-length schedule to the run's length;
:func:`with_base_lr` fills a schedule's unset base learning rate; :func:`apply` is the one
function that writes an optimizer's learning rate. All are re-exported by
:mod:`trainwell.optim.schedules`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..errors import UserError
from ._checks import _ArgError, _int, _num
from .plateau import Performance
from .schedule_basic import (
    Constant,
    Cosine,
    Exponential,
    OneCycle,
    Piecewise,
    Power,
    Schedule,
    constant,
    cosine,
    exponential,
    one_cycle,
    piecewise,
    power,
)
from .schedule_compose import Join, Warmup

__all__ = [
    "apply",
    "check_total_steps",
    "with_total_steps",
    "with_base_lr",
    "set_base_lr",
    "needs_base_lr",
    "split_plateau",
    "SCHEDULES",
    "build",
]


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


def needs_base_lr(schedule: Any) -> bool:
    """True when ``schedule`` (or a schedule it wraps) still has its base lr unset."""
    if isinstance(schedule, Warmup):
        return needs_base_lr(schedule.schedule)
    if isinstance(schedule, Join):
        return any(needs_base_lr(s) for s in schedule.schedules)
    if isinstance(schedule, Performance):
        return needs_base_lr(schedule.schedule)
    arg = getattr(schedule, "base_arg", None) if isinstance(schedule, Schedule) else None
    return arg is not None and getattr(schedule, arg) is None


def with_base_lr(schedule: Any, lr: float) -> Any:
    """A copy of ``schedule`` whose unset base lr (its ``base_arg``: lr, lr0, max_lr) is ``lr``.

    This is the one way a schedule receives the optimizer's learning rate: a schedule built
    without its peak or starting lr (``one_cycle()``, ``cosine(total_steps=100)``) is filled
    here, through :func:`warmup`, :func:`join` and the plateau controller. Other arguments
    given as learning rates (``final_lr``, ``start_lr``, ``min_lr``) stay as given. Schedules
    with their base set, or with none (``piecewise``), are returned unchanged.

    Raises:
        ValueError: ``lr`` is not a finite number >= 0.
    """
    _num("with_base_lr", "lr", lr, strict=False)
    if not needs_base_lr(schedule):
        return schedule
    if isinstance(schedule, Warmup):
        return dataclasses.replace(schedule, schedule=with_base_lr(schedule.schedule, lr))
    if isinstance(schedule, Join):
        inner = tuple(with_base_lr(s, lr) for s in schedule.schedules)
        return dataclasses.replace(schedule, schedules=inner)
    if isinstance(schedule, Performance):
        out = copy.copy(schedule)
        out.schedule = with_base_lr(schedule.schedule, lr)
        return out
    return dataclasses.replace(schedule, **{schedule.base_arg: float(lr)})


@functools.lru_cache(maxsize=64)
def _filled_cached(schedule: Any, base: float) -> Any:
    return with_base_lr(schedule, base)


def _filled(schedule: Any, base: float) -> Any:
    # apply runs every step: the frozen schedules hash by value, so each (schedule, base) is
    # filled once, not once per step and group. Unhashable user schedules fill every call.
    try:
        return _filled_cached(schedule, base)
    except TypeError:
        return with_base_lr(schedule, base)


def check_total_steps(
    schedule: Any,
    total_steps: int,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    unit: str = "step",
) -> None:
    """Refuse a fixed-length schedule whose length differs from the run's, before training.

    ``total_steps`` is the run's length in ``unit``s (steps, or epochs for a schedule
    stepped per epoch). An unset length is not a mismatch: :func:`with_total_steps` fills it.

    Raises:
        UserError: ``"schedule.total_steps: one_cycle was built for 1000 steps but the run
        has 2260 (20 epochs × 113 batches); set total_steps=2260 or leave it unset"``.
    """
    built = getattr(schedule, "total_steps", None)
    if built is None or built == total_steps:
        return
    if unit == "epoch":
        how = f" ({epochs} epochs)" if epochs else ""
    else:
        how = f" ({epochs} epochs × {steps_per_epoch} batches)" if epochs and steps_per_epoch else ""
    name = getattr(schedule, "name", type(schedule).__name__)
    raise UserError(
        f"schedule.total_steps: {name} was built for {built} {unit}s but the run has "
        f"{total_steps}{how}; set total_steps={total_steps} or leave it unset"
    )


def split_plateau(schedule: Any, plateau: Any = None) -> tuple[Any, Any]:
    """``(schedule, controller)`` with a :class:`Performance` given as the schedule taken apart.

    ``split_plateau(Performance(schedule=s), None) == (s, the controller)``; anything else is
    returned as given. The controller is the same object (its state is shared), not a copy.

    Raises:
        ValueError: a controller given both as ``schedule`` and as ``plateau``.
    """
    if isinstance(schedule, Performance):
        if plateau is not None:
            raise ValueError(
                "two plateau controllers: give Performance either as schedule or as plateau"
            )
        return schedule.schedule, schedule
    return schedule, plateau


def apply(
    optimizer: Any,
    schedule: Callable[[int], float] | None,
    step: int,
    scale: float = 1.0,
    *,
    plateau: Performance | None = None,
) -> float:
    """Write the learning rate of every parameter group of ``optimizer``: the one writer.

    For each group g, with base_g its base lr (``group["base_lr"]``, recorded from
    ``group["lr"]`` the first time this function sees the group):

        s_g(t) = schedule(t), or ``with_base_lr(schedule, base_g)(t)`` when the schedule's
                 base lr is unset, or base_g when ``schedule`` is None
        η_g(t) = lr_scale_g · max(s_g(t) · scale · plateau.scale, plateau.min_lr)

    (without a plateau controller: η_g = lr_scale_g · s_g(t) · scale). ``lr_scale`` (default
    1) carries discriminative rates and transfer unfreezing. ``schedule`` may itself be a
    :class:`Performance` wrapping a schedule (or None); give the controller once.
    When the schedule's ``momentum(t)`` is not None it writes group["momentum"] = m if the
    group has that key, else group["betas"] = (m, β2).

    Returns:
        The lr written for the first group.

    Raises:
        ValueError: a controller given both as ``schedule`` and as ``plateau``.
    """
    schedule, plateau = split_plateau(schedule, plateau)
    fill = schedule is not None and needs_base_lr(schedule)
    mom_fn = getattr(schedule, "momentum", None)
    m = mom_fn(step) if callable(mom_fn) else None
    first = None
    for group in optimizer.param_groups:
        base = group.setdefault("base_lr", group["lr"])
        if schedule is None:
            lr = base
        else:
            lr = float((_filled(schedule, base) if fill else schedule)(step))
        lr *= scale
        if plateau is not None:
            lr = plateau.lr(lr)
        group["lr"] = lr * group.get("lr_scale", 1.0)
        first = group["lr"] if first is None else first
        if m is not None:
            if "momentum" in group:
                group["momentum"] = m
            elif "betas" in group:
                group["betas"] = (m, group["betas"][1])
    return 0.0 if first is None else first


SCHEDULES: dict[str, Callable[..., Any]] = {
    "constant": constant,
    "power": power,
    "exponential": exponential,
    "piecewise": piecewise,
    "cosine": cosine,
    "one_cycle": one_cycle,
}

# The argument holding each registered schedule's base lr, read from the classes.
_BASE_ARG: dict[str, str | None] = {
    cls.name: cls.base_arg for cls in (Constant, Power, Exponential, Piecewise, Cosine, OneCycle)
}
_BASE_ARG["performance"] = "lr"


def _performance(lr: float | None = None, **controller: Any) -> Performance:
    return Performance(schedule=None if lr is None else constant(lr), **controller)


def build(name: str, *, lr_from_optimizer: bool = False, **kw: Any) -> Any:
    """Build the schedule registered as ``name`` (or ``"performance"``: a plateau controller
    over ``constant(lr)``) from config keyword arguments.

    With ``lr_from_optimizer=True`` the schedule's base lr (``lr``/``lr0``/``max_lr``) may be
    left out: it stays unset and :func:`apply` takes it from the optimizer's groups.

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
    base = _BASE_ARG.get(name)
    if base is not None and base not in kw:
        if not lr_from_optimizer:
            raise UserError(f"schedule.{base}: required by {name}; set it")
        kw = {**kw, base: None}
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


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's base learning rate, as ``optim.lr`` does for a config run.

    The base is what :func:`apply` multiplies by the schedule and ``lr_scale``; the group's
    current ``lr`` becomes ``lr · lr_scale`` at once, so a loop without a schedule sees it
    too. Discriminative ratios (``lr_scale``) are kept.
    """
    _num("set_base_lr", "lr", lr, strict=False)
    for group in optimizer.param_groups:
        group["base_lr"] = float(lr)
        group["lr"] = float(lr) * group.get("lr_scale", 1.0)
