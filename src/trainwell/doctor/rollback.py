"""``RollbackGuard``: the Python-only repair for non-finite steps."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from ..train.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from ..train.trainer import Trainer

__all__ = ["RollbackGuard"]


class RollbackGuard(Callback):
    """Keep the last healthy weights; after a non-finite loss restore them and skip the batch.

    A Trainer callback: every ``every`` finite steps it copies
    the model and optimizer state; on a non-finite loss it loads the copy back.
    """

    def __init__(self, every: int = 10) -> None:
        self.every, self.rollbacks = every, 0
        self._state: tuple[dict[str, Any], dict[str, Any]] | None = None

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Save on healthy steps, restore after a non-finite one."""
        if not bool(torch.isfinite(loss)):
            if self._state is not None:
                trainer.model.load_state_dict(self._state[0])
                trainer.optimizer.load_state_dict(self._state[1])
                self.rollbacks += 1
        elif step % self.every == 0:
            self._state = (
                copy.deepcopy(trainer.model.state_dict()),
                copy.deepcopy(trainer.optimizer.state_dict()),
            )
