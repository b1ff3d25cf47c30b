"""The doctor's Trainer callback: wires the probes to the training events.

It only wires: :class:`~trainwell.doctor.probes.Probe` measures, the callback collects a
:class:`~trainwell.doctor.findings.Health` and writes ``run_dir/health.jsonl`` after every
epoch (and ``report.html`` at the end when asked). Deciding is left to
:func:`trainwell.doctor.rules.diagnose_health`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..train.batch import default_forward
from ..train.callbacks import Callback
from .findings import Finding, Health
from .probe_batch import PROBE_SAMPLES, draw_from_dataset, draw_probe_batch, probe_on_batch
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


STEP_TIMES_KEPT = 4096  # the first steps' times are kept (a long run's list stays small)


class DoctorCallback(Callback):
    """Record gradient health during ``Trainer.fit`` (and write ``health.jsonl``).

    Args:
        every: probe period in steps (see :func:`~trainwell.doctor.probes.probe_schedule`).
        num_classes: number of classes of the data, if known (the head check uses it).
        report: also write ``report.html`` into the run directory when training ends.
        target_range: (min, max) of the regression targets, if known (the head check
            compares it with a bounded output activation's range).
        probe_samples: size of the fixed probe batch, drawn once with the run's seed from
            the training split (see :mod:`~trainwell.doctor.probe_batch`); 0 probes the
            training batch instead. Data the Trainer holds as a DataLoader, or a custom
            ``loss_fn(outputs, batch)``, are probed on the training batch as well.

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
        probe_samples: int = PROBE_SAMPLES,
    ) -> None:
        self.every = int(every)
        self.probe_samples = int(probe_samples)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.target_range = target_range
        self.num_classes = num_classes
        self.report = report
        self.health = Health()
        self.probe: Probe | None = None
        self._losses: list[torch.Tensor] = []
        self._carried: list[float] = []  # the epoch's step losses before a mid-epoch resume
        self._carried_probes: list[dict[str, Any]] = []  # …and its probe records
        self._first_probe = 0  # index in health.probes of the epoch under way's first record
        self._probed = False
        self._epoch = 0
        # wall time spent probing, and probe steps taken (the doctor's time budget subtracts
        # them from a run's measured time: see trainwell.cli.repair_loop)
        self.probe_seconds = 0.0
        self.probe_steps = 0
        # wall seconds of each training step (its probing left out) and of each epoch's
        # steps in all, for the doctor's estimate of a run's time (median step × steps)
        self.step_seconds: list[float] = []
        self.epoch_step_seconds: list[float] = []
        # wall seconds of each epoch from its start to its on_epoch_end (validation included)
        self.epoch_seconds: list[float] = []
        self._epoch_t0: float | None = None
        self._tick: float | None = None
        self._probed_at_tick = 0.0
        self._epoch_steps = 0.0

    # ---- events -------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer) -> None:
        """Find the layers, write the meta line, arm the first probe."""
        model = getattr(trainer.model, "module", trainer.model)  # unwrapped (DDP)
        self.probe = Probe(model, self.every)
        self._batch = self._probe_batch(trainer, model)
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
        # A resumed process has recorded before: the start-only statistics (unit spread,
        # bias mean) belong to the run's first probe, not to its first probe after a resume.
        self.probe.records = len(self.health.probes)
        if probe_schedule(int(trainer.step), self.every) and self._batch is None:
            self.probe.arm()
        self._write(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Remember the epoch for the probe records."""
        self._epoch = epoch
        self._tick, self._epoch_steps = time.perf_counter(), 0.0
        self._epoch_t0 = self._tick
        self._probed_at_tick = self.probe_seconds
        if not self._carried:  # a resumed epoch's records so far came with the state
            self._first_probe = len(self.health.probes)

    def on_after_backward(self, trainer: Trainer, step: int) -> None:
        """On a probe step: gradient statistics and the weight snapshot."""
        if self.probe is None:
            return
        if self._batch is not None:
            loss_fn = trainer.loss_fn
            self._probed = probe_schedule(step, self.every) and loss_fn is not None
            if loss_fn is not None and self._probed:
                t0 = time.perf_counter()
                probe_on_batch(self.probe, self.probe.model, loss_fn, self._batch)
                self.probe_seconds += time.perf_counter() - t0
            return
        self._probed = self.probe.armed
        if self._probed:
            t0 = time.perf_counter()
            self.probe.grads()
            self.probe_seconds += time.perf_counter() - t0

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Keep the loss (no sync); finish a probe step; arm the next one."""
        self._losses.append(loss)
        probe = self.probe
        if probe is None:
            return
        self._time_step()
        if self._probed:
            assert probe is not None, "a probe step is set by on_after_backward's probe"
            t0 = time.perf_counter()
            probe.update()
            rec = probe.record(step, float(loss), self._epoch)
            self.health.probes.append(rec)
            self._probed = False
            self.probe_seconds += time.perf_counter() - t0
            self.probe_steps += 1
        if probe_schedule(step + 1, self.every) and self._batch is None:
            probe.arm()

    def _time_step(self) -> None:
        # the time since the last step ended (or the epoch began), less the probing done in
        # it: a step's own cost, whatever the probe period
        now = time.perf_counter()
        if self._tick is not None:
            step = max(0.0, now - self._tick - (self.probe_seconds - self._probed_at_tick))
            if len(self.step_seconds) < STEP_TIMES_KEPT:
                self.step_seconds.append(step)
            self._epoch_steps += step
        self._tick, self._probed_at_tick = now, self.probe_seconds

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Move the epoch's losses to floats (one sync per epoch) and append to the log."""
        self.epoch_step_seconds.append(self._epoch_steps)
        if self._epoch_t0 is not None:
            self.epoch_seconds.append(time.perf_counter() - self._epoch_t0)
        self._tick = self._epoch_t0 = None
        values = self._losses_so_far()
        self.health.losses += values
        row = {k: metrics[k] for k in _EPOCH_KEYS if k in metrics}
        row["steps"] = len(values)
        self.health.epochs.append(row)
        self.health.context["skipped_steps"] = int(getattr(trainer, "skipped_steps", 0))
        self._losses, self._carried = [], []
        self._first_probe = len(self.health.probes)
        self._write(trainer)

    def _losses_so_far(self) -> list[float]:
        """The epoch's step losses as floats (one sync), after any a resume carried over."""
        values = torch.stack(self._losses).double().cpu().tolist() if self._losses else []
        return self._carried + values

    def state_dict(self) -> dict[str, Any]:
        """``{"losses", "probes"}`` of the epoch under way (empty at an epoch's end).

        ``health.jsonl`` is written at epochs' ends, so a mid-epoch checkpoint keeps what the
        epoch recorded so far: its step losses and probe records.
        """
        losses = self._losses_so_far()
        probes = self.health.probes[self._first_probe :]
        return {"losses": losses, "probes": probes} if losses or probes else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry a mid-epoch checkpoint's step losses and probes into the resumed epoch."""
        self._carried = [float(v) for v in state.get("losses", [])]
        self._carried_probes = [dict(p) for p in state.get("probes", [])]

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

    def _probe_batch(
        self, trainer: Trainer, model: torch.nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fixed probe batch from the trainer's training data, on the model's device:
        its in-memory split, or a map-style torch dataset of ``(x, y)`` samples behind a
        DataLoader (None: probe the training batch)."""
        src = getattr(trainer, "_train_src", None)
        split = getattr(src, "split", None)
        custom = trainer.user_loss is not None or trainer.forward is not default_forward
        if self.probe_samples < 1 or custom:
            return None  # a custom loss/forward takes whole batches: probe the training batch
        if split is not None:
            x, y = draw_probe_batch(split.x, split.y, seed=trainer.seed,
                                    samples=self.probe_samples)
        else:
            dataset = getattr(getattr(src, "loader", None), "dataset", None)
            drawn = (draw_from_dataset(dataset, seed=trainer.seed, samples=self.probe_samples)
                     if dataset is not None else None)
            if drawn is None:
                return None
            x, y = drawn
        device = next(model.parameters()).device
        return x.to(device), y.to(device)

    def _resume(self, trainer: Trainer) -> None:
        """After a resume, keep the record of the epochs the checkpoint holds, and the
        records of the interrupted epoch that a mid-epoch checkpoint carried."""
        run_dir = getattr(trainer, "run_dir", None)
        path = Path(run_dir) / "health.jsonl" if run_dir is not None else None
        carried, self._carried_probes = self._carried_probes, []
        if trainer.step == 0 or self.health.epochs or path is None or not path.is_file():
            return
        old = Health.read(path)
        epochs = old.epochs[: trainer.epoch]
        steps = sum(int(e.get("steps", 0)) for e in epochs)
        self.health.epochs = epochs
        self.health.losses = old.losses[:steps]
        # The file holds whole epochs only (it is written at their ends); the epoch the
        # checkpoint interrupted comes from the checkpoint's state.
        self.health.probes = [p for p in old.probes if p["step"] < steps]
        self._first_probe = len(self.health.probes)
        self.health.probes += [p for p in carried if p["step"] < trainer.step]

    def _write(self, trainer: Trainer) -> None:
        run_dir = getattr(trainer, "run_dir", None)
        if run_dir is None:
            return
        path = Path(run_dir) / "health.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.health.write(path)
