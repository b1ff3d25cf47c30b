"""Optimizers, learning-rate schedules, gradient clipping and weight penalties.

``build(name, params, **hyperparameters)`` is the single place that maps an optimizer's
name to its class; schedules are pure functions ``step -> lr`` in :mod:`.schedules`.
"""

from __future__ import annotations

from . import clip, penalties, schedules
from .registry import OPTIMIZERS, OptimizerSpec, build

__all__ = ["OPTIMIZERS", "OptimizerSpec", "build", "clip", "penalties", "schedules"]
