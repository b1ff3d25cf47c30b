"""The progress display: one rich bar per run, live loss/accuracy per epoch."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # rich is imported on entry only, to keep `import trainwell` fast
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

__all__ = ["Progress"]

_UPDATES_PER_EPOCH = 20  # bar refreshes per epoch: enough to look live, cheap enough to ignore


class Progress:
    """A rich progress bar over all steps of a run; a no-op when ``enabled`` is False."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self._every = max(1, steps_per_epoch // _UPDATES_PER_EPOCH)
        self._pending = 0
        self._seen = 0
        self._bar: RichProgress | None = None
        self._console: Console | None = None
        self._task: TaskID

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console

            self._console = Console()
            if not self._console.is_terminal:  # a log file gets one line per epoch, no bar
                return self
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.epochs * self.steps_per_epoch,
                                            epoch=f"0/{self.epochs}", stats="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def start_epoch(self, epoch: int) -> None:
        """Mark the start of epoch ``epoch`` (0-based)."""
        if self._bar is not None:
            self._bar.update(self._task, epoch=f"{epoch + 1}/{self.epochs}",
                             completed=epoch * self.steps_per_epoch)

    def advance(self, loss: torch.Tensor) -> None:
        """One step done; refreshes the bar every few steps only (a refresh syncs the loss)."""
        if self._bar is None:
            return
        self._pending += 1
        if self._pending >= self._every:
            self._bar.advance(self._task, self._pending)
            self._pending = 0

    def end_epoch(self, metrics: dict[str, Any]) -> None:
        """Show the finished epoch's loss and accuracy."""
        if not self.enabled:
            return
        parts = [f"loss {metrics['train_loss']:.4f}"]
        if "train_accuracy" in metrics:
            parts.append(f"acc {metrics['train_accuracy']:.3f}")
        if "val_loss" in metrics:
            parts.append(f"val_loss {metrics['val_loss']:.4f}")
        if "val_accuracy" in metrics:
            parts.append(f"val_acc {metrics['val_accuracy']:.3f}")
        line = f"epoch {metrics['epoch']:>3}/{self.epochs}  " + "  ".join(parts)
        if self._bar is None:
            assert self._console is not None, "Progress is used outside its `with` block"
            self._console.print(line, highlight=False)
            return
        self._bar.advance(self._task, self._pending)
        self._pending = 0
        self._bar.update(self._task, stats="  ".join(parts))
        self._bar.console.print(line, highlight=False)
