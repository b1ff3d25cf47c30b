"""The callback protocol: the Trainer's named events and the no-op base class.

The Trainer fires these events, in this order, and never imports who listens:

    on_fit_start
      on_epoch_start
        on_after_backward   (per optimizer step: gradients of all its micro-batches
                             present, unscaled under fp16, before clipping)
        on_step_end         (per optimizer step: after the step, or after its skip when
                             the loss or a gradient was not finite)
      on_epoch_end          (metrics of the epoch; a callback may add keys)
    on_fit_end

A callback that keeps state saves it with ``state_dict`` so that a resumed run continues
exactly. Control flow: set ``trainer.stop_training = True`` to stop after the current epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from .trainer import Trainer

__all__ = ["Callback"]


class Callback:
    """Base class with one no-op method per training event."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Training is about to start (or resume at ``trainer.epoch``)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) is about to start."""

    def on_after_backward(self, trainer: Trainer, step: int) -> None:
        """Gradients of global step ``step`` are in ``.grad`` (unscaled), not yet clipped."""

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Step ``step`` is done (applied, or skipped if not finite); ``loss`` is its detached loss.

        ``loss`` stays on the device: reading it (``float(loss)``) waits for a GPU, so a
        callback that needs the number every step costs a host sync per step.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Epoch ``epoch`` is done; ``metrics`` will be logged after all callbacks ran."""

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """Training finished (all epochs, or stopped)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state to save in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
