"""Early stopping: stop when the monitored epoch metric stops improving; keep the best weights.

The best epoch's weights are kept as a clone of the model's state on the model's own
device (no host copy, no sync beyond the metric, which is already a Python float in the
epoch metrics). They live in this process only: checkpoints carry the counters (JSON), not
the weights. A run resumed after its best epoch gets them back from
``checkpoints/best.safetensors`` when a :class:`~trainwell.train.best.BestCheckpoint`
wrote that epoch there, and otherwise says once that it keeps the last weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import UserError
from .best import load_best
from .callbacks import Callback
from .monitor import MonitoredBest

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .trainer import Trainer

__all__ = ["EarlyStopping"]



class EarlyStopping(MonitoredBest, Callback):
    """Set ``trainer.stop_training`` after ``patience`` epochs without improvement.

    Improvement at an epoch's end: ``value < best − min_delta`` (``mode="min"``) or
    ``value > best + min_delta`` (``mode="max"``); the first finite value always improves
    and a NaN never does. After an improvement ``wait = 0``, else ``wait += 1``; when
    ``wait == patience`` training stops after that epoch. So with the best at epoch b
    (1-based) and no later improvement, the run ends at epoch ``b + patience``.

    With ``restore_best`` the best epoch's weights (parameters and buffers) are put back
    when training ends, early or at the last epoch — not when ``fit(until=k)`` only pauses.

    Args:
        monitor: a key of the Trainer's epoch metrics, e.g. ``"val_loss"``.
        mode: ``"min"`` (losses) or ``"max"`` (accuracies).
        patience: epochs without improvement before stopping, ≥ 1.
        min_delta: how much better than the best a value must be to count, ≥ 0.
        restore_best: load the best epoch's weights at the end of training.

    Attributes:
        best: the best value so far (None before the first finite one).
        best_epoch: its epoch (1-based, as in the metrics), or None.
        wait: epochs since the best.
        stopped_epoch: the epoch after which this callback stopped training, or None.

    Raises:
        UserError: a bad ``mode``, ``patience`` or ``min_delta`` (at construction); a
            ``monitor`` missing from the epoch metrics (at the first epoch's end); a resumed
            state that monitored another metric or mode.

    Example:
        >>> stop = EarlyStopping("val_loss", patience=5)
        >>> Trainer(model, opt, epochs=200, batch_size=128, callbacks=[stop]).fit(data)
        >>> stop.best_epoch, stop.stopped_epoch
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True) -> None:
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UserError(f"patience: must be an integer >= 1, got {patience!r}; "
                            "e.g. 5 epochs")
        self.patience = patience
        self.restore_best = bool(restore_best)
        self.wait = 0
        self.stopped_epoch: int | None = None
        # The best epoch's state, cloned on the model's device; only what this process saw.
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_state_epoch: int | None = None
        self._warned = False

    def on_fit_start(self, trainer: Trainer) -> None:
        """A run resumed after it had stopped early stays stopped."""
        if self.stopped_epoch is not None:
            trainer.stop_training = True

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Update best/wait from ``metrics[monitor]``; stop after ``patience`` bad epochs."""
        value = self.value_of(metrics)
        number = int(metrics.get("epoch", epoch + 1))
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, number, 0
            if self.restore_best:
                self._best_state = {k: v.detach().clone()
                                    for k, v in trainer.model.state_dict().items()}
                self._best_state_epoch = number
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = number
            trainer.stop_training = True

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """Put the best epoch's weights back when training is over (not at a pause)."""
        finished = trainer.stop_training or trainer.epoch >= trainer.epochs
        if not (self.restore_best and finished) or self.best_epoch is None:
            return
        if self.best_epoch == trainer.epoch:
            return  # the last epoch is the best: the model already holds its weights
        if self._best_state is not None and self._best_state_epoch == self.best_epoch:
            trainer.model.load_state_dict(self._best_state)
        elif (run_dir := self._run_dir_with_best(trainer)) is not None:
            load_best(trainer.model, run_dir)
        elif not self._warned:
            self._warned = True
            warnings.warn(
                f"EarlyStopping: the best epoch ({self.best_epoch}, {self.monitor} = "
                f"{self.best:g}) came before the resume and its weights are not kept across "
                "processes; the model keeps the last epoch's weights. Add a "
                f"BestCheckpoint({self.monitor!r}, mode={self.mode!r}) callback to keep them "
                "on disk",
                UserWarning,
                stacklevel=2,
            )

    def _run_dir_with_best(self, trainer: Trainer) -> Path | None:
        # Only a best.* written for the same metric, mode and epoch holds our best weights.
        if trainer.run_dir is None:
            return None
        path = Path(trainer.run_dir) / "checkpoints" / "best.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or unreadable: not ours to trust
            return None
        ours = (meta.get("monitor"), meta.get("mode"), meta.get("epoch")) == (
            self.monitor, self.mode, self.best_epoch)
        return Path(trainer.run_dir) if ours else None

    def state_dict(self) -> dict[str, Any]:
        """``{"monitor", "mode", "best", "best_epoch", "wait", "stopped_epoch"}`` (JSON-ready)."""
        return {**self.best_state(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters; refuse a state that watched another metric or mode."""
        if not self.load_best_state(state):
            return
        self.wait = int(state.get("wait", 0))
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)
