"""Training: the Trainer, the callback protocol, checkpoints, losses and the LR finder."""

from __future__ import annotations

from .best import BestCheckpoint, load_best
from .callbacks import Callback
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .early_stopping import EarlyStopping
from .loggers import CSVLogger, TensorBoardLogger
from .losses import LOSSES
from .lr_find import LRFindResult, lr_find
from .trainer import Trainer, epoch_seed, resolve_device

__all__ = ["BestCheckpoint", "CSVLogger", "Callback", "EarlyStopping", "LOSSES",
           "LRFindResult", "TensorBoardLogger", "Trainer", "epoch_seed", "latest_checkpoint",
           "load_best", "load_checkpoint", "lr_find", "resolve_device", "save_checkpoint"]
