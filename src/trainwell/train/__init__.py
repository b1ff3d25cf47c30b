"""Training: the Trainer, the callback protocol, checkpoints, losses and the LR finder."""

from __future__ import annotations

from .callbacks import Callback
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .losses import LOSSES
from .lr_find import LRFindResult, lr_find
from .trainer import Trainer, epoch_seed, resolve_device

__all__ = ["Callback", "LOSSES", "LRFindResult", "Trainer", "epoch_seed", "latest_checkpoint",
           "load_checkpoint", "lr_find", "resolve_device", "save_checkpoint"]
