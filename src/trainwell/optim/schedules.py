"""Learning-rate schedules as pure functions ``step -> lr``, the plateau controller, and apply.

A schedule is a small frozen dataclass with ``__call__(step) -> float`` (step counted from
0): it holds no counter, so resuming a run needs no ``last_epoch`` bookkeeping — call it
with the restored step. Schedules pickle, print their arguments, and compose
(:func:`warmup`, :func:`join`, and :class:`Performance`, the plateau controller, which wraps
any schedule). A schedule may leave two things to the run: its length (``total_steps``,
filled by :func:`with_total_steps`; a fixed length that differs from the run's is refused
before training by :func:`check_total_steps`) and its base learning rate (``lr``, ``lr0`` or
``max_lr``, filled from the optimizer by :func:`with_base_lr`).

One function writes an optimizer's learning rate, :func:`apply`: for every parameter group
η = lr_scale · max(schedule(t) · plateau scale, min_lr), the schedule taking the group's
base lr when its own is unset. Discriminative rates and transfer unfreezing change
``lr_scale`` only; the Trainer calls :func:`apply` every step.

This module is the public face: the basic schedules live in :mod:`.schedule_basic`, the
composing ones in :mod:`.schedule_compose`, the controller in :mod:`.plateau`, the registry
and the run glue in :mod:`.schedule_registry`.

Every factory validates its arguments and raises ``ValueError`` naming the argument, e.g.
``"power: s must be > 0, got 0"``; :func:`build` (the config's entry point) turns those
into :class:`~trainwell.errors.UserError` ``"schedule.s: ..."``.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> sched = one_cycle(total_steps=100)        # peak: the optimizer's lr
    >>> round(apply(opt, sched, 0), 6)
    0.01
"""

from __future__ import annotations

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
from .schedule_compose import Join, Warmup, join, performance, warmup
from .schedule_registry import (
    SCHEDULES,
    apply,
    build,
    check_total_steps,
    needs_base_lr,
    set_base_lr,
    split_plateau,
    with_base_lr,
    with_total_steps,
)

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
    "with_base_lr",
    "needs_base_lr",
    "set_base_lr",
    "split_plateau",
    "SCHEDULES",
    "build",
]
