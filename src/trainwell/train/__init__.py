"""Training: the Trainer, the callback protocol, checkpoints, losses, the run-failed rule."""

from __future__ import annotations

from .callbacks import Callback
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .guard import run_failure
from .losses import LOSSES
from .trainer import Trainer, epoch_seed, resolve_device

__all__ = ["Callback", "LOSSES", "Trainer", "epoch_seed", "latest_checkpoint",
           "load_checkpoint", "resolve_device", "run_failure", "save_checkpoint"]
