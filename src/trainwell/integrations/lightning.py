"""The doctor inside PyTorch Lightning's ``trainer.fit``: :class:`DoctorCallback`.

A thin adapter over :class:`trainwell.doctor.Watcher`: it maps Lightning's hooks onto the
watcher's ``start`` / ``step(loss)`` / ``end_epoch(**metrics)`` / ``close`` and leaves
measuring and deciding to the doctor, so it works for any ``LightningModule``.

Example:
    >>> import lightning as L
    >>> from trainwell.integrations.lightning import DoctorCallback
    >>> doctor = DoctorCallback(every=50, num_classes=10)
    >>> L.Trainer(max_epochs=5, callbacks=[doctor]).fit(model, train_loader, val_loader)
    trainwell doctor: lr_too_high (+2 more findings): the loss jumps up or oscillates ... [report: lightning_logs/version_0/report.html]
    >>> [f.kind for f in doctor.findings()]
    ['lr_too_high', 'vanishing_gradients', 'dying_relu']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..doctor import DEFAULT_EVERY, Finding, Watcher, write_report

# Lightning is an optional dependency: the unified ``lightning`` package first, the
# standalone ``pytorch_lightning`` (same API) when only that one is installed.
try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        # mypy: the same names from a second package are an [assignment] error where both
        # packages are installed, and the ignore is unused where they are not
        from pytorch_lightning import (  # type: ignore[assignment, unused-ignore]
            Callback,
            LightningModule,
            Trainer,
        )
    except ImportError:
        raise ImportError(
            "trainwell.integrations.lightning needs PyTorch Lightning: "
            "pip install 'trainwell[lightning]'"
        ) from None

__all__ = ["DoctorCallback"]

# Names the doctor's rules read (``val_loss``, ``val_accuracy`` …) and the names Lightning
# users commonly log them under; an explicit ``metric_names`` entry wins over these.
_ALIASES: dict[str, tuple[str, ...]] = {
    "train_loss": ("train_loss_epoch", "loss_epoch"),
    "train_accuracy": ("train_acc", "train_accuracy_epoch", "train_acc_epoch"),
    "val_loss": ("val_loss_epoch",),
    "val_accuracy": ("val_acc", "val_accuracy_epoch", "val_acc_epoch"),
}
# Keys the watcher writes itself into each epoch row; a logged metric must not shadow them.
_RESERVED = frozenset({"epoch", "steps"})


class DoctorCallback(Callback):
    """Record gradient health during ``trainer.fit`` and write ``health.jsonl`` + ``report.html``.

    At fit start the doctor's probes attach to the ``LightningModule``'s layers; every
    optimizer step feeds the batch loss (read from ``on_train_batch_end``'s ``outputs``,
    kept on the device: no host sync except on probe steps); every training epoch ends
    with the scalars in ``trainer.callback_metrics`` (validation has run by then); at fit
    end the hooks are removed, the primary finding (the first) is printed in one line and,
    on global rank 0 only, ``health.jsonl`` and ``report.html`` are written into
    ``dirpath``. ``health.jsonl`` is also rewritten after every epoch, so a crashed run
    keeps its record.

    With ``accumulate_grad_batches = k`` one record covers one optimizer step: Lightning
    divides each batch loss by k, so the sum over the window is the window's mean loss.
    A step whose ``training_step`` returned no loss (Lightning skips it) is not recorded.
    Under DDP every rank watches its own replica; ``findings()`` is that rank's diagnosis.

    Args:
        every: probe period in optimizer steps (step 0 and every ``every``-th step).
        num_classes: number of classes, if a classification task (the chance level).
        loss: the loss name for the rules (``"cross_entropy"``, ``"nll"``, ``"bce"``,
            ``"mse"``).
        dirpath: folder for ``health.jsonl`` and ``report.html``; default
            ``trainer.log_dir`` (the logger's folder, or ``trainer.default_root_dir``
            without a logger).
        report: write ``report.html`` at fit end (``health.jsonl`` is always written).
        verbose: print the one-line verdict at fit end (rank 0).
        metric_names: the doctor's epoch-metric names mapped to the names your module logs,
            e.g. ``{"val_accuracy": "valid/acc"}``. ``val_acc``/``train_acc`` and
            Lightning's ``*_epoch`` suffix are recognised without it.

    Attributes:
        watcher: the :class:`~trainwell.doctor.Watcher` of the current (or last) fit.
        out_dir: the folder the files go to, resolved at fit start.

    Raises:
        ValueError: ``every`` < 1.

    Example:
        >>> doctor = DoctorCallback(every=20, num_classes=2, dirpath="runs/mlp")
        >>> trainer = lightning.pytorch.Trainer(max_epochs=3, callbacks=[doctor])
        >>> trainer.fit(module, train_loader, val_loader)
        trainwell doctor: no finding, the run looks healthy [report: runs/mlp/report.html]
        >>> doctor.findings()
        []
    """

    def __init__(
        self,
        *,
        every: int = DEFAULT_EVERY,
        num_classes: int | None = None,
        loss: str = "cross_entropy",
        dirpath: str | Path | None = None,
        report: bool = True,
        verbose: bool = True,
        metric_names: Mapping[str, str] | None = None,
    ) -> None:
        if int(every) < 1:
            raise ValueError(f"every: must be >= 1 optimizer step, got {every}")
        self.every = int(every)
        self.num_classes = num_classes
        self.loss = loss
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.report = report
        self.verbose = verbose
        self.metric_names = dict(metric_names or {})
        self.watcher: Watcher | None = None
        self.out_dir: Path | None = None  # resolved at fit start
        self._window: torch.Tensor | None = None  # loss summed over the current step's batches
        self._window_batches = 0
        self._stepped = False  # an optimizer stepped during the current batch

    # ---- Lightning hooks ----------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolve the output folder and attach the probes to ``pl_module``'s layers."""
        # trainer.log_dir broadcasts from rank 0: every rank must call it, so here, not
        # behind the rank-0 check.
        log_dir = trainer.log_dir if self.dirpath is None else None
        self.out_dir = self.dirpath or Path(log_dir or trainer.default_root_dir)
        # Hooks on the LightningModule itself, not trainer.model (a DDP wrapper maybe):
        # layer names then read as the user wrote them.
        self.watcher = Watcher(
            pl_module, every=self.every, num_classes=self.num_classes, loss=self.loss
        )
        self.watcher.start()
        self._window, self._window_batches, self._stepped = None, 0, False

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        """Note that this batch ends an optimizer step (not so while accumulating)."""
        self._stepped = True

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Add the batch loss to the step's window; after an optimizer step, feed the watcher."""
        loss = _loss_of(outputs)
        if loss is not None:
            self._window = loss if self._window is None else self._window + loss
            self._window_batches += 1
        if not self._stepped or self.watcher is None:
            return
        self._stepped = False
        window, n = self._window, self._window_batches
        self._window, self._window_batches = None, 0
        if window is None:
            return
        if not pl_module.automatic_optimization:
            window = window / n  # manual optimization: Lightning did not pre-divide the losses
        self.watcher.step(window)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """End the doctor's epoch with this epoch's logged scalars; save ``health.jsonl``."""
        if self.watcher is None:
            return
        self.watcher.end_epoch(**self._epoch_metrics(trainer.callback_metrics))
        if trainer.is_global_zero:
            self._write_health()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remove the hooks; on rank 0 write the files and print the verdict."""
        if self.watcher is None:
            return
        self.watcher.close()
        if not trainer.is_global_zero:
            return
        path = self._write_health()
        findings = self.findings()
        if self.report and path is not None:
            path = write_report(path.parent, health=self.watcher.health, findings=findings)
        if self.verbose:
            print(_verdict(findings, path), flush=True)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Never leave hooks on the user's model; keep what was recorded (rank 0)."""
        if self.watcher is None:
            return
        self.watcher.close()
        if trainer.is_global_zero:
            self._write_health()

    # ---- results ------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """The doctor's findings on what was recorded so far, primary first (``[]`` before fit)."""
        return self.watcher.findings() if self.watcher is not None else []

    # ---- helpers ------------------------------------------------------------------
    def _epoch_metrics(self, logged: Mapping[str, Any]) -> dict[str, float]:
        """Scalar metrics (one host sync per epoch), under the names the rules read."""
        scalars = {k: v for k, v in ((k, _scalar(v)) for k, v in logged.items()) if v is not None}
        out = {k: v for k, v in scalars.items() if k not in _RESERVED}
        for name, aliases in _ALIASES.items():
            if name not in out:
                found = next((scalars[a] for a in aliases if a in scalars), None)
                if found is not None:
                    out[name] = found
        for name, logged_name in self.metric_names.items():
            if logged_name in scalars:
                out[name] = scalars[logged_name]
        return out

    def _write_health(self) -> Path | None:
        if self.watcher is None or self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "health.jsonl"
        self.watcher.health.write(path)
        return path


def _loss_of(outputs: Any) -> torch.Tensor | None:
    """The detached loss in ``training_step``'s output (a tensor or a mapping with ``loss``)."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("loss")
    if torch.is_tensor(outputs) and outputs.numel() == 1:
        return outputs.detach().reshape(())
    return None


def _scalar(value: Any) -> float | None:
    if torch.is_tensor(value):
        return float(value) if value.numel() == 1 else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _verdict(findings: list[Finding], report: Path | None) -> str:
    """One line: the primary finding (or health) and where the report is."""
    where = f" [report: {report}]" if report is not None else ""
    if not findings:
        return f"trainwell doctor: no finding, the run looks healthy{where}"
    first = findings[0]
    layers = f" in {', '.join(first.layers[:3])}" if first.layers else ""
    if len(first.layers) > 3:
        layers += f" (+{len(first.layers) - 3} layers)"
    more = len(findings) - 1
    extra = f" (+{more} more finding{'s' if more > 1 else ''})" if more else ""
    return f"trainwell doctor: {first.kind}{layers}{extra}: {first.explanation}{where}"
