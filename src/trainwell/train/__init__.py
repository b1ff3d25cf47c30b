"""Training: the Trainer, the callback protocol, checkpoints, losses, the LR finder and the
run-failed rule."""

from __future__ import annotations

from .best import BestCheckpoint, load_best
from .callbacks import Callback
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .early_stopping import EarlyStopping
from .guard import run_failure
from .loggers import CSVLogger, TensorBoardLogger
from .losses import LOSSES
from .lr_find import LRFindResult, lr_find
from .trainer import Trainer, epoch_seed, resolve_device

__all__ = ["BestCheckpoint", "CSVLogger", "Callback", "EarlyStopping", "LOSSES",
           "LRFindResult", "TensorBoardLogger", "Trainer", "epoch_seed", "latest_checkpoint",
           "load_best", "load_checkpoint", "lr_find", "resolve_device", "run_failure",
           "save_checkpoint"]
