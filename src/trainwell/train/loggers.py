"""Metric loggers as Trainer callbacks: CSV files and TensorBoard event files.

Both follow the run's checkpoints: after a resume they hold exactly the epochs (and steps)
the checkpoint holds, then continue — no duplicated or orphaned rows from the killed run.
Per-step losses stay on the device until the epoch ends (one host sync per epoch); a
mid-epoch checkpoint saves those of the epoch so far in the logger's state, so a resume
mid-epoch still writes every step of that epoch.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import UserError
from .callbacks import Callback
from .checkpoint import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .trainer import Trainer

__all__ = ["CSVLogger", "TensorBoardLogger", "scalar_metrics"]

_STEP_HEADER = ["epoch", "step", "loss"]
_INSTALL = "pip install 'trainwell[tensorboard]' (or pip install tensorboard)"


def _tensorboard_installed() -> bool:
    # find_spec looks the package up without importing it (importing takes ~1 s).
    return importlib.util.find_spec("tensorboard") is not None


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, int | float]:
    """The numeric scalars of an epoch's metrics (lists such as ``grad_norms`` and bools left out).

    Example:
        >>> scalar_metrics({"epoch": 1, "train_loss": 0.5, "grad_norms": [1.0]})
        {'epoch': 1, 'train_loss': 0.5}
    """
    return {k: v for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: dict[str, None] = {}  # the union of keys, in first-seen order
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: they read back bit-identical
    return out.getvalue()


class CSVLogger(Callback):
    """Write the epoch metrics to ``metrics.csv`` (and optionally every step's loss).

    ``metrics.csv``: a header, then one row per epoch; the columns are the union of the
    numeric scalar metrics in first-seen order (``epoch``, ``train_loss``, …, ``val_loss``,
    …), a cell left empty where an epoch lacks a key. The file is rewritten atomically at
    each epoch's end from the trainer's history, so it is always whole, and keys that a
    later callback adds show up from the next rewrite on.

    ``steps.csv`` (with ``steps=True``): header ``epoch,step,loss``, one row per optimizer
    step (``epoch`` 1-based as in the metrics, ``step`` the global 0-based index), appended
    once per epoch. At fit start, rows beyond the checkpointed epochs (and a torn last line)
    are dropped, so a resumed run continues the file without duplicates.

    Args:
        folder: where the files go; default the trainer's ``run_dir``. With neither,
            nothing is written.
        steps: also log the loss of every step.
        filename, steps_filename: the file names.

    Example:
        >>> Trainer(model, opt, epochs=3, batch_size=64, run_dir="runs/a",
        ...         callbacks=[CSVLogger(steps=True)]).fit(data)
        >>> Path("runs/a/metrics.csv").read_text().splitlines()[0]
        'epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,skipped_steps,...'
    """

    def __init__(self, folder: str | Path | None = None, *, steps: bool = False,
                 filename: str = "metrics.csv", steps_filename: str = "steps.csv") -> None:
        self.folder = Path(folder) if folder is not None else None
        self.steps = bool(steps)
        self.filename, self.steps_filename = filename, steps_filename
        self._dir: Path | None = None
        self._losses: list[torch.Tensor] = []
        self._step_ids: list[int] = []
        self._carried: list[tuple[int, float]] = []  # the epoch's steps before a resume

    def on_fit_start(self, trainer: Trainer) -> None:
        """Bring both files in line with the trainer's (possibly restored) history."""
        self._dir = self.folder if self.folder is not None else trainer.run_dir
        if self._dir is None:
            return
        atomic_write_text(self._dir / self.filename,
                          _csv_text([scalar_metrics(h) for h in trainer.history]))
        if self.steps:
            self._truncate_steps(self._dir / self.steps_filename, int(trainer.epoch))

    @staticmethod
    def _truncate_steps(path: Path, epochs_done: int) -> None:
        kept = [",".join(_STEP_HEADER)]
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                cells = line.split(",")
                # Rows past the checkpoint include any torn line of a kill mid-append: the
                # append comes before that epoch's checkpoint is written.
                if len(cells) == 3 and cells[0].isdigit() and int(cells[0]) <= epochs_done:
                    kept.append(line)
        atomic_write_text(path, "\n".join(kept) + "\n")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Start collecting the epoch's step losses (after any carried over by a resume)."""
        self._losses, self._step_ids = [], []

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Keep the step's loss on its device (no sync)."""
        if self.steps and self._dir is not None:
            self._losses.append(loss.detach())
            self._step_ids.append(int(step))

    def _steps_so_far(self) -> list[tuple[int, float]]:
        values = torch.stack(self._losses).double().cpu().tolist() if self._losses else []
        return self._carried + list(zip(self._step_ids, values))

    def state_dict(self) -> dict[str, Any]:
        """``{"steps": [[step, loss], ...]}`` of the epoch under way (empty at an epoch's end)."""
        rows = self._steps_so_far()
        return {"steps": [[s, v] for s, v in rows]} if rows else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry a mid-epoch checkpoint's steps into the epoch the resume continues."""
        self._carried = [(int(s), float(v)) for s, v in state.get("steps", [])]

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Rewrite ``metrics.csv``; append the epoch's steps to ``steps.csv``."""
        if self._dir is None:
            return
        rows = [scalar_metrics(h) for h in trainer.history] + [scalar_metrics(metrics)]
        atomic_write_text(self._dir / self.filename, _csv_text(rows))
        steps = self._steps_so_far() if self.steps else []  # one sync per epoch
        if steps:
            number = int(metrics.get("epoch", epoch + 1))
            text = "".join(f"{number},{s},{v!r}\n" for s, v in steps)
            with open(self._dir / self.steps_filename, "a", encoding="utf-8") as f:
                f.write(text)
        self._losses, self._step_ids, self._carried = [], [], []

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """Final rewrite from the history, with every callback's keys."""
        if self._dir is not None:
            atomic_write_text(self._dir / self.filename,
                              _csv_text([scalar_metrics(h) for h in history]))


class TensorBoardLogger(Callback):
    """Write scalars (per epoch and per step) and the doctor's gradient norms for TensorBoard.

    One x-axis for everything, the number of completed optimizer steps: the loss of step
    ``s`` (0-based) is logged at ``s + 1`` as ``step/loss``; an epoch's scalar metrics at
    ``trainer.step`` (the steps done when it ends) as ``epoch/<name>``. On resume the writer
    purges events past the checkpoint's step count (``purge_step``), so the killed run's
    orphaned points disappear.

    With ``doctor`` (a :class:`~trainwell.doctor.DoctorCallback`, or anything with
    ``health.probes``: records ``{"step", "layers": {name: {"grad_norm", …}}}``), each new
    probe record gives, at its step + 1, ``doctor/grad_norm/<layer>`` scalars and two
    histograms over the layers: ``doctor/grad_norm`` and ``doctor/log10_grad_norm`` (the
    log shows vanishing layers, ~1e-32, next to healthy ones).

    ``torch.utils.tensorboard`` needs the optional ``tensorboard`` package
    (``pip install trainwell[tensorboard]``); it is imported when training starts.

    Args:
        folder: the event-file folder; default ``run_dir / "tensorboard"``. With neither,
            nothing is written.
        steps: log every step's loss.
        doctor: the doctor callback whose probe records to log (put it in the callbacks too).

    Raises:
        UserError: at construction, when the ``tensorboard`` package is not installed (so a
            run fails before it writes anything; the message says what to install).
        ModuleNotFoundError: at fit start, when ``torch.utils.tensorboard`` still cannot be
            imported.

    Example:
        >>> doc = DoctorCallback(every=50)
        >>> tb = TensorBoardLogger(steps=True, doctor=doc)
        >>> Trainer(model, opt, epochs=5, batch_size=64, run_dir="runs/a",
        ...         callbacks=[doc, tb]).fit(data)       # tensorboard --logdir runs/a
    """

    def __init__(self, folder: str | Path | None = None, *, steps: bool = True,
                 doctor: Any = None) -> None:
        if not _tensorboard_installed():
            raise UserError(f"TensorBoardLogger: the tensorboard package is not installed; "
                            f"{_INSTALL}")
        self.folder = Path(folder) if folder is not None else None
        self.steps = bool(steps)
        self.doctor = doctor
        self.writer: Any = None
        self._losses: list[torch.Tensor] = []
        self._first_step = 0
        self._logged_probe_step = -1
        self._carried: tuple[int, list[float]] | None = None  # (first step, losses) of a resume

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the writer, purging points beyond the checkpoint's step count."""
        folder = self.folder
        if folder is None and trainer.run_dir is not None:
            folder = Path(trainer.run_dir) / "tensorboard"
        if folder is None:
            return
        try:  # optional dependency: only users of this logger need it
            from torch.utils.tensorboard import SummaryWriter
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"TensorBoardLogger: torch.utils.tensorboard cannot be "
                                      f"imported ({e}); {_INSTALL}") from e
        done = int(trainer.step)
        # purge_step hides events at steps ≥ done + 1: what the killed run logged after the
        # checkpoint. The checkpointed epoch's own scalars sit at `done` and stay.
        self.writer = SummaryWriter(str(folder), purge_step=done + 1 if done else None)
        self._logged_probe_step = done - 1

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Start collecting the epoch's step losses (after any carried over by a resume)."""
        self._losses = []
        self._first_step = int(trainer.step) if self._carried is None else self._carried[0]

    def _losses_so_far(self) -> list[float]:
        values = torch.stack(self._losses).double().cpu().tolist() if self._losses else []
        return (self._carried[1] if self._carried is not None else []) + values

    def state_dict(self) -> dict[str, Any]:
        """``{"first_step", "losses"}`` of the epoch under way (empty at an epoch's end)."""
        values = self._losses_so_far()
        return {"first_step": self._first_step, "losses": values} if values else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry a mid-epoch checkpoint's step losses into the epoch the resume continues."""
        if state.get("losses"):
            self._carried = (int(state["first_step"]), [float(v) for v in state["losses"]])

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        """Keep the step's loss on its device (no sync)."""
        if self.writer is not None and self.steps:
            self._losses.append(loss.detach())

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Write the epoch's step losses, its scalar metrics and new probe records."""
        if self.writer is None:
            return
        for i, v in enumerate(self._losses_so_far()):  # one sync per epoch
            self.writer.add_scalar("step/loss", v, self._first_step + i + 1)
        self._losses, self._carried = [], None
        at = int(trainer.step)
        for key, value in scalar_metrics(metrics).items():
            self.writer.add_scalar(f"epoch/{key}", value, at)
        if self.doctor is not None:
            self._log_probes()
        self.writer.flush()

    def _log_probes(self) -> None:
        for rec in getattr(getattr(self.doctor, "health", None), "probes", []):
            step = int(rec["step"])
            if step <= self._logged_probe_step:
                continue
            norms = {name: float(st["grad_norm"]) for name, st in rec.get("layers", {}).items()
                     if isinstance(st.get("grad_norm"), int | float)
                     and math.isfinite(st["grad_norm"])}
            for name, value in norms.items():
                self.writer.add_scalar(f"doctor/grad_norm/{name}", value, step + 1)
            if norms:
                values = torch.tensor(list(norms.values()), dtype=torch.float64)
                self.writer.add_histogram("doctor/grad_norm", values, step + 1)
                # log10(0) = −inf would break the histogram: floor at the float64 tiny.
                logs = values.clamp_min(torch.finfo(torch.float64).tiny).log10()
                self.writer.add_histogram("doctor/log10_grad_norm", logs, step + 1)
            self._logged_probe_step = step

    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None:
        """Close the writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
