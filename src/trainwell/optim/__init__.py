"""Optimizers, learning-rate schedules, gradient clipping, weight penalties.

``build(name, params, **hyperparameters)`` is the single place that maps an optimizer's
name to its class; schedules are pure functions ``step -> lr`` in :mod:`.schedules`.

Example:
    >>> import torch, trainwell as tw
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = tw.optim.build("momentum", model.parameters(), lr=0.01, momentum=0.9)
    >>> sched = tw.optim.schedules.one_cycle(max_lr=0.1, total_steps=1000)
"""

from __future__ import annotations

from . import clip, penalties, schedules
from .adagrad import AdaGrad
from .adam import Adam, AdaMax, AdamW, Nadam
from .registry import OPTIMIZERS, OptimizerSpec, build, hyperparameters
from .rmsprop import RMSProp
from .sgd import SGD, Momentum, Nesterov

__all__ = ["OPTIMIZERS", "SGD", "AdaGrad", "AdaMax", "Adam", "AdamW", "Momentum",
           "Nadam", "Nesterov", "OptimizerSpec", "RMSProp", "build", "clip", "hyperparameters",
           "penalties", "schedules"]
