"""Best-model checkpointing: keep the weights of the epoch with the best monitored metric.

Files, beside the trainer's ``epoch-EEEE.*`` checkpoints in ``run_dir/checkpoints/``:

- ``best.safetensors``: the model's state (``model/<name>``), no optimizer state (the best
  model is for evaluation and export; training resumes from the last checkpoint);
- ``best.json``: the same header as a trainer checkpoint (``format``, ``epoch``,
  ``tensors``, ``sha256``, ``model_keys``) plus ``monitor``, ``mode``, ``value`` and the
  epoch's scalar ``metrics`` — so :func:`~trainwell.train.checkpoint.load_checkpoint`
  verifies and reads it like any checkpoint.

Both are written atomically (temporary file, fsync, rename), tensors first: the JSON names
the hash of the tensors it goes with, so a process killed between the two renames leaves a
pair that ``load_checkpoint`` refuses as corrupt; the resumed run redoes that epoch (exact
resume) and writes the pair again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from ..errors import UserError
from .callbacks import Callback
from .checkpoint import (
    FORMAT_VERSION,
    _atomic_write,
    _sha256,
    apply_model_state,
    atomic_write_text,
    load_checkpoint,
)

# The one atomic writer and the tensor-file hash of train.checkpoint (private there).
from .monitor import MonitoredBest

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .trainer import Trainer

__all__ = ["BestCheckpoint", "load_best"]



def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)}


class BestCheckpoint(MonitoredBest, Callback):
    """Save the model whenever the monitored epoch metric improves (``checkpoints/best.*``).

    Improvement: ``value < best − min_delta`` for ``mode="min"``, ``value > best + min_delta``
    for ``mode="max"``; the first finite value is always an improvement and a NaN never
    is. Ties keep the earlier epoch. The best value and epoch are saved in the trainer's
    checkpoints (:meth:`state_dict`), so a resumed run compares against the best so far.
    Like the Trainer, with no run folder it writes nothing (it still tracks the best).

    Args:
        monitor: a key of the Trainer's epoch metrics, e.g. ``"val_loss"``,
            ``"val_accuracy"``, ``"train_loss"``.
        mode: ``"min"`` (losses) or ``"max"`` (accuracies).
        min_delta: how much better than the best a value must be to count, ≥ 0.
        folder: where to write; default ``trainer.run_dir / "checkpoints"``.

    Attributes:
        best: the best value so far (None before the first finite one).
        best_epoch: its epoch (1-based, as in the metrics), or None.

    Raises:
        UserError: an unknown ``mode`` or a negative ``min_delta`` (at construction); a
            ``monitor`` missing from the epoch metrics (at the first epoch's end); a resumed
            state that monitored another metric.

    Example:
        >>> best = BestCheckpoint("val_accuracy", mode="max")
        >>> Trainer(model, opt, epochs=20, batch_size=128, run_dir="runs/a",
        ...         callbacks=[best]).fit(data)
        >>> meta = load_best(model, "runs/a")      # the best epoch's weights, into model
        >>> meta["epoch"], meta["value"]
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0,
                 folder: str | Path | None = None) -> None:
        super().__init__(monitor, mode, min_delta)
        self.folder = Path(folder) if folder is not None else None

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Compare the monitored value with the best; on improvement write ``best.*``."""
        value = self.value_of(metrics)
        if not self.improves(value):
            return
        self.best, self.best_epoch = value, int(metrics.get("epoch", epoch + 1))
        folder = self.folder
        if folder is None and trainer.run_dir is not None:
            folder = Path(trainer.run_dir) / "checkpoints"
        if folder is not None:
            self._write(folder, trainer.model, metrics)

    def _write(self, folder: Path, model: torch.nn.Module, metrics: dict[str, Any]) -> None:
        state = model.state_dict()
        tensors = {f"model/{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()}
        tensor_path = folder / "best.safetensors"
        _atomic_write(tensor_path, lambda tmp: save_file(tensors, tmp))
        meta = {
            "format": FORMAT_VERSION,
            "epoch": self.best_epoch,
            "tensors": tensor_path.name,
            "sha256": _sha256(tensor_path),
            "model_keys": sorted(state),
            "monitor": self.monitor,
            "mode": self.mode,
            "value": self.best,
            "metrics": _scalars(metrics),
        }
        atomic_write_text(folder / "best.json", json.dumps(meta))

    def state_dict(self) -> dict[str, Any]:
        """``{"monitor", "mode", "best", "best_epoch"}`` (JSON-ready; ``best`` is finite or None)."""
        return self.best_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best so far; refuse a state that watched another metric or mode."""
        self.load_best_state(state)


def load_best(model: torch.nn.Module, run_dir: str | Path) -> dict[str, Any]:
    """Load ``run_dir/checkpoints/best.*`` into ``model`` and return its JSON header.

    Args:
        model: a model of the same architecture as the run's.
        run_dir: the run folder.

    Returns:
        The header: ``epoch``, ``monitor``, ``mode``, ``value``, ``metrics`` …

    Raises:
        UserError: no best checkpoint, a corrupt one, or one from another model.

    Example:
        >>> load_best(model, "runs/cifar10-resnet")["epoch"]
        17
    """
    path = Path(run_dir) / "checkpoints" / "best.json"
    if not path.is_file():
        raise UserError(f"run_dir: {path} does not exist; train with a BestCheckpoint "
                        "callback first")
    tensors, meta = load_checkpoint(path)
    apply_model_state(model, tensors, str(path))
    return meta
