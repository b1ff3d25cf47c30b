"""Training: the Trainer, the callback protocol, checkpoints and losses."""

from __future__ import annotations

from .best import BestCheckpoint, load_best
from .callbacks import Callback
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .early_stopping import EarlyStopping
from .loggers import CSVLogger, TensorBoardLogger
from .losses import LOSSES
from .trainer import Trainer, epoch_seed, resolve_device

__all__ = ["BestCheckpoint", "CSVLogger", "Callback", "EarlyStopping", "LOSSES",
           "TensorBoardLogger", "Trainer", "epoch_seed", "latest_checkpoint", "load_best",
           "load_checkpoint", "resolve_device", "save_checkpoint"]
