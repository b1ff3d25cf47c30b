"""The doctor's Trainer callback: wires the probes to the training events.

It only wires: :class:`~trainwell.doctor.probes.Probe` measures, the callback collects a
:class:`~trainwell.doctor.findings.Health` and writes ``run_dir/health.jsonl`` after every
epoch (and ``report.html`` at the end when asked). Deciding is left to
:func:`trainwell.doctor.rules.diagnose_health`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..train.callbacks import Callback
from .findings import Finding, Health
from .probes import Probe, probe_schedule
from .report import write_report
from .rules import diagnose_health

if TYPE_CHECKING:  # pragma: no cover
    from ..train.trainer import Trainer

__all__ = ["DEFAULT_EVERY", "DoctorCallback"]

DEFAULT_EVERY = 200
"""Probe period in steps of a training run. One probe step of the 8×256 MLP costs ~1.5
plain steps on 2 CPU cores (hooks, pre-scaled norms, a 4096-value histogram per layer), so
probing every 200 steps costs ≲ 1% (the machine noise is ±5%); ``benchmarks/doctor.py``
measures the ratio."""

_EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "skipped_steps",
    "epoch_time_s",
)


class DoctorCallback(Callback):
    """Record gradient health during ``Trainer.fit`` (and write ``health.jsonl``).

    Args:
        every: probe period in steps (see :func:`~trainwell.doctor.probes.probe_schedule`).
        num_classes: number of classes of the data, if known (the head check uses it).
        report: also write ``report.html`` into the run directory when training ends.
        target_range: (min, max) of the regression targets, if known (the head check
            compares it with a bounded output activation's range).

    Attributes:
        health: the :class:`Health` collected so far.
    """

    def __init__(
        self,
        every: int = DEFAULT_EVERY,
        *,
        num_classes: int | None = None,
        report: bool = False,
        target_range: tuple[float, float] | None = None,
    ) -> None:
        self.every = int(every)
        self.target_range = target_range
        self.num_classes = num_classes
        self.report = report
        self.health = Health()
        self.probe: Probe | None = None
        self._losses: list[torch.Tensor] = []
        self._probed = False
        self._epoch = 0

    # ---- events -------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer) -> None:
        """Find the layers, write the meta line, arm the first probe."""
        self.probe = Probe(trainer.model, self.every)
        head = self.probe.layers[-1] if self.probe.layers else None
        self.health.layers = [info.meta() for info in self.probe.layers]
        self.health.context = {
            "task": getattr(trainer, "task", None),
            "loss": getattr(trainer, "loss_name", None),
            "num_classes": self.num_classes,
            "output_activation": head.activation if head is not None else None,
            "out_features": head.fan_out if head is not None else None,
            "every": self.every,
            "skipped_steps": 0,
        }
        if self.target_range is not None:
            self.health.context["target_range"] = list(self.target_range)
        self._epoch = int(trainer.epoch)
        self._resume(trainer)
        if probe_schedule(int(trainer.step), self.every):
            self.probe.arm()
        self._write(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Remember the epoch for the probe records."""
        self._epoch = epoch

    def on_after_backward(self, trainer: Trainer, step: int) -> None:
        """On a probe step: gradient statistics and the weight snapshot."""
        self._probed = self.probe is not None and self.probe.armed
        if self._probed:
            self.probe.grads()

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Keep the loss (no sync); finish a probe step; arm the next one."""
        self._losses.append(loss)
        if self._probed:
            self.probe.update()
            rec = self.probe.record(step, float(loss), self._epoch)
            self.health.probes.append(rec)
            self._probed = False
        if probe_schedule(step + 1, self.every):
            self.probe.arm()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Move the epoch's losses to floats (one sync per epoch) and append to the log."""
        values = torch.stack(self._losses).double().cpu().tolist() if self._losses else []
        self.health.losses += values
        row = {k: metrics[k] for k in _EPOCH_KEYS if k in metrics}
        row["steps"] = len(values)
        self.health.epochs.append(row)
        self.health.context["skipped_steps"] = int(getattr(trainer, "skipped_steps", 0))
        self._losses = []
        self._write(trainer)

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """Remove hooks; write the report when asked."""
        if self.probe is not None:
            self.probe.disarm()
        if self.report and trainer.run_dir is not None:

            write_report(trainer.run_dir, health=self.health, findings=self.findings())

    # ---- results --------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """The findings of the rules on what was recorded so far."""

        return diagnose_health(self.health)

    def _resume(self, trainer: Trainer) -> None:
        """After a resume, keep the record of the epochs the checkpoint holds."""
        run_dir = getattr(trainer, "run_dir", None)
        path = Path(run_dir) / "health.jsonl" if run_dir is not None else None
        if trainer.epoch == 0 or self.health.epochs or path is None or not path.is_file():
            return
        old = Health.read(path)
        epochs = old.epochs[: trainer.epoch]
        steps = sum(int(e.get("steps", 0)) for e in epochs)
        self.health.epochs = epochs
        self.health.losses = old.losses[:steps]
        self.health.probes = [p for p in old.probes if p["step"] < trainer.step]

    def _write(self, trainer: Trainer) -> None:
        run_dir = getattr(trainer, "run_dir", None)
        if run_dir is None:
            return
        path = Path(run_dir) / "health.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.health.write(path)
