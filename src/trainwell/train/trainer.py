"""The Trainer: a short, readable training loop with named events and exact resume.

One step reads top to bottom: forward → loss (+ penalty) → backward → event → clip →
schedule → optimizer step → max-norm → event. The Trainer owns no technique: the
optimizer, schedule, clipping and penalty are plain objects passed in, and everything else
(the doctor, transfer-learning unfreezing) listens through :class:`Callback` events.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import Dataset, Split
from ..errors import UserError
from ..optim import schedules as _schedules
from ..optim.clip import grad_norm
from .callbacks import Callback
from .checkpoint import (
    apply_model_state,
    apply_optimizer_state,
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .losses import batch_correct, predict_classes, resolve_loss
from .progress import Progress

__all__ = ["Trainer", "resolve_device", "epoch_seed"]

_EVAL_BATCH = 4096  # samples per forward pass in evaluate(): bounds memory, not results


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' was asked for but no CUDA device is available; "
                        "use device = \"auto\" or \"cpu\"")
    return dev


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffling and dropout: a pure function of the run's seed.

    Deriving it per epoch (instead of carrying one generator through the run) is what makes
    resume exact without saving RNG state: epoch E draws the same numbers whether or not the
    process was restarted before it.
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


class Trainer:
    """Fit a ``torch.nn.Module`` on an in-memory :class:`~trainwell.data.Dataset`.

    Args:
        model: any ``nn.Module`` mapping a batch of features to outputs.
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters.
        epochs: number of passes over the training split.
        batch_size: samples per step; the last smaller batch of an epoch is kept.
        seed: seeds shuffling and dropout per epoch (see :func:`epoch_seed`).
        loss: ``"auto"``, ``"cross_entropy"``, ``"nll"``, ``"bce"`` or ``"mse"``.
        schedule: a callable ``step -> lr`` (see :mod:`trainwell.optim.schedules`), a
            ``Performance`` controller wrapping one, or None to keep the optimizer's learning
            rate. An unset ``total_steps`` is filled from the run's length and an unset base
            lr from the optimizer's groups; ``schedules.apply`` writes every group's lr.
        schedule_unit: ``"step"`` (called with the global batch index) or ``"epoch"``.
        plateau: a controller with ``update(metric)``, ``scale`` and ``state_dict`` (e.g.
            ``schedules.Performance``), fed the validation loss at each epoch end; its scale
            multiplies whatever the schedule gives.
        clip: a callable ``params -> grad norm before clipping`` (``optim.clip.build``).
        penalty: a callable ``model -> penalty`` added to the loss and logged apart.
        max_norm: a callable ``model -> None`` applied after each step (max-norm constraint).
        log_grad_norm: log the global gradient norm each step even without clipping.
        callbacks: :class:`Callback` objects, called in order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go; None writes nothing.
        checkpoint_every: write a checkpoint every this many epochs (and at the end).
        progress: show a progress bar.

    Example:
        >>> trainer = Trainer(model, optimizer, epochs=20, batch_size=128, seed=0)
        >>> history = trainer.fit(data)      # list of per-epoch metric dicts
        >>> trainer.evaluate(data.test)      # {"loss": ..., "accuracy": ...}
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 epochs: int, batch_size: int, seed: int = 0, loss: str = "auto",
                 schedule: Callable[[int], float] | None = None, schedule_unit: str = "step",
                 plateau: Any = None, clip: Callable | None = None, penalty: Callable | None = None,
                 max_norm: Callable | None = None, log_grad_norm: bool = False,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "auto",
                 run_dir: str | Path | None = None, checkpoint_every: int = 1,
                 progress: bool = True) -> None:
        if epochs < 1:
            raise UserError(f"epochs: must be >= 1, got {epochs}")
        if batch_size < 1:
            raise UserError(f"batch_size: must be >= 1, got {batch_size}")
        if schedule_unit not in ("step", "epoch"):
            raise UserError(f"schedule_unit: must be 'step' or 'epoch', got {schedule_unit!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.epochs, self.batch_size, self.seed = int(epochs), int(batch_size), int(seed)
        self.loss_name = loss
        self.schedule_unit = schedule_unit
        self.schedule, self.plateau = _schedules.split_plateau(schedule, plateau)
        self.clip, self.penalty, self.max_norm = clip, penalty, max_norm
        self.log_grad_norm = log_grad_norm
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.show_progress = progress
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps (global batch index)
        self.skipped_steps = 0  # steps skipped for a non-finite loss or gradient norm
        self.stop_training = False
        self.history: list[dict[str, Any]] = []
        self.task = "classification"
        self.loss_fn: Callable = torch.nn.functional.cross_entropy
        self.last_grad_norm: float | None = None
        self._restored = False

    # -- public API -------------------------------------------------------------------
    def fit(self, data: Dataset, *, resume: bool = False,
            until: int | None = None) -> list[dict[str, Any]]:
        """Train for the remaining epochs; return the history (one dict per epoch).

        With ``resume=True`` and a checkpoint in ``run_dir``, model, optimizer, counters,
        history and callback state are restored first and training continues from there.
        With ``until=k`` training pauses once ``k`` epochs are done, while the run keeps its
        full length ``epochs`` (schedules, the final checkpoint): a later ``fit`` continues
        the same run, epoch for epoch, as one uninterrupted call would have trained it.
        """
        steps_per_epoch = self.check(data)
        train, val = data.train.to(self.device), data.val.to(self.device)
        if resume and not self._restored:
            self.restore()
        metrics_path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        if metrics_path is not None:  # the log holds exactly the checkpointed epochs
            atomic_write_text(metrics_path, "".join(json.dumps(h) + "\n" for h in self.history))
        for cb in self.callbacks:
            cb.on_fit_start(self)
        stop = self.epochs if until is None else min(int(until), self.epochs)
        bar = Progress(self.epochs, steps_per_epoch, enabled=self.show_progress)
        with bar:
            while self.epoch < stop and not self.stop_training:
                metrics = self._train_epoch(train, val, bar)
                self.history.append(metrics)
                self.epoch += 1
                if metrics_path is not None:
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(metrics) + "\n")
                if self.run_dir is not None and (self.epoch % self.checkpoint_every == 0
                                                 or self.epoch in (stop, self.epochs)
                                                 or self.stop_training):
                    save_checkpoint(self.run_dir, self.epoch, self.model, self.optimizer,
                                    self._trainer_state())
        for cb in self.callbacks:
            cb.on_fit_end(self, self.history)
        return self.history

    def check(self, data: Dataset) -> int:
        """Check that ``data`` fits this trainer (loss, schedule length) before any training.

        Returns:
            The number of steps per epoch.

        Raises:
            UserError: an empty training split, a loss that does not fit the task, or a
                fixed-length schedule whose length differs from the run's.
        """
        self.task = data.task
        self.loss_name, self.loss_fn = resolve_loss(self.loss_name, data.task)
        if len(data.train) == 0:
            raise UserError("data: the training split is empty; use more samples")
        steps_per_epoch = math.ceil(len(data.train) / self.batch_size)
        self._check_schedule_length(steps_per_epoch)
        return steps_per_epoch

    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, float]:
        """Mean loss (and accuracy for classification) of the model on ``split``."""
        if len(split) == 0:
            return {}
        if self.loss_fn is None or self.task is None:
            raise RuntimeError("evaluate() needs the loss: call fit() first")
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, len(split), _EVAL_BATCH):
            x = split.x[start:start + _EVAL_BATCH].to(self.device)
            y = split.y[start:start + _EVAL_BATCH].to(self.device)
            out = self.model(x)
            loss_sum += self.loss_fn(out, y).double() * len(x)
            if self.task == "classification":
                correct += batch_correct(self.loss_name, out, y)
        self.model.train(was_training)
        result = {"loss": float(loss_sum) / len(split)}
        if self.task == "classification":
            result["accuracy"] = int(correct) / len(split)
        return result

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs for ``x`` in eval mode, batched, on the CPU."""
        was_training = self.model.training
        self.model.eval()
        outs = [self.model(x[s:s + _EVAL_BATCH].to(self.device)).cpu()
                for s in range(0, len(x), _EVAL_BATCH)]
        self.model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0)

    # -- one epoch ----------------------------------------------------------------------
    def _train_epoch(self, train: Split, val: Split, bar: Progress) -> dict[str, Any]:
        epoch = self.epoch
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        torch.manual_seed(epoch_seed(self.seed, epoch) + 1)  # dropout and other layer noise
        self.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        order = torch.randperm(len(train), generator=gen).to(self.device)
        x_all, y_all = train.x[order], train.y[order]
        # Per-step scalars are only collected here and reduced once at the epoch's end: a
        # few small tensor ops per step are measurable next to a small MLP's step on a CPU.
        losses: list[torch.Tensor] = []
        penalties: list[torch.Tensor] = []
        predictions: list[torch.Tensor] = []  # class indices: 8 bytes a sample, not logits
        grad_norms: list[float] = []  # per step, before clipping; only when clipping or asked
        classify = self.task == "classification"
        bar.start_epoch(epoch)
        t0 = time.perf_counter()
        lr = self._apply_schedule(epoch) if self.schedule_unit == "epoch" else None
        for start in range(0, len(train), self.batch_size):
            x, y = x_all[start:start + self.batch_size], y_all[start:start + self.batch_size]
            out = self.model(x)
            loss = self.loss_fn(out, y)
            total = loss
            if self.penalty is not None:
                pen = self.penalty(self.model)
                total = loss + pen
                penalties.append(pen.detach())
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            for cb in self.callbacks:
                cb.on_after_backward(self, self.step)
            finite = math.isfinite(total.item())
            if self.clip is not None:
                norm = self.clip(params)
                self.last_grad_norm = float(norm)
                grad_norms.append(self.last_grad_norm)
                finite = finite and math.isfinite(self.last_grad_norm)
            elif self.log_grad_norm:
                self.last_grad_norm = float(grad_norm(params))
                grad_norms.append(self.last_grad_norm)
                finite = finite and math.isfinite(self.last_grad_norm)
            if self.schedule_unit == "step":
                lr = self._apply_schedule(self.step)
            if finite:
                self.optimizer.step()
                if self.max_norm is not None:
                    self.max_norm(self.model)
            else:  # a non-finite step would turn every weight into NaN: skip it, count it
                self.skipped_steps += 1
            loss_d = loss.detach()
            losses.append(loss_d)
            if classify:
                predictions.append(predict_classes(self.loss_name, out.detach()))
            for cb in self.callbacks:
                cb.on_step_end(self, self.step, loss_d)
            self.step += 1
            bar.advance(loss_d)
        seconds = time.perf_counter() - t0
        n = len(train)
        sizes = torch.full((len(losses),), float(self.batch_size), dtype=torch.float64,
                           device=self.device)
        sizes[-1] = n - self.batch_size * (len(losses) - 1)  # the last batch may be smaller
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float((torch.stack(losses).double() * sizes).sum()) / n}
        if classify:
            correct = (torch.cat(predictions) == y_all.reshape(-1)).sum()
            metrics["train_accuracy"] = int(correct) / n
        if self.penalty is not None:
            metrics["train_penalty"] = float((torch.stack(penalties).double() * sizes).sum()) / n
        for key, value in self.evaluate(val).items():
            metrics[f"val_{key}"] = value
        metrics["lr"] = self.optimizer.param_groups[0]["lr"] if lr is None else lr
        metrics["skipped_steps"] = self.skipped_steps
        if grad_norms:  # the clipper computes the norm anyway: logging it costs nothing more
            finite_norms = [g for g in grad_norms if math.isfinite(g)]
            metrics["grad_norm_mean"] = (sum(finite_norms) / len(finite_norms)
                                         if finite_norms else float("nan"))
            metrics["grad_norm_max"] = max(grad_norms)
            metrics["grad_norms"] = grad_norms
        metrics["epoch_time_s"] = seconds
        metrics["samples_per_s"] = n / seconds if seconds > 0 else float("inf")
        if self.plateau is not None:
            self.plateau.update(metrics.get("val_loss", metrics["train_loss"]))
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, metrics)
        bar.end_epoch(metrics)
        return metrics

    # -- helpers ------------------------------------------------------------------------
    def _apply_schedule(self, index: int) -> float:
        # schedules.apply is the one writer of every group's lr (schedule, plateau, lr_scale).
        return _schedules.apply(self.optimizer, self.schedule, index, plateau=self.plateau)

    def _check_schedule_length(self, steps_per_epoch: int) -> None:
        # Refuse an explicit length that does not fit; fill an unset one from the run.
        total = self.epochs * (steps_per_epoch if self.schedule_unit == "step" else 1)
        _schedules.check_total_steps(self.schedule, total, epochs=self.epochs,
                                     steps_per_epoch=steps_per_epoch, unit=self.schedule_unit)
        try:
            self.schedule = _schedules.with_total_steps(self.schedule, total)
        except ValueError as e:
            raise UserError(f"schedule.total_steps: the run has only {total} "
                            f"{self.schedule_unit}s ({e}); train longer") from None

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "seed": self.seed,
            "history": self.history,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def restore(self) -> None:
        """Load the newest checkpoint of ``run_dir`` (model, optimizer, counters, history).

        ``fit(data, resume=True)`` calls it when it has not been called yet; calling it
        first lets a caller verify the checkpoint before writing anything. With no
        checkpoint yet (a run killed during its first epoch) training starts over.

        Raises:
            UserError: a corrupt checkpoint, or one from another model or seed.
        """
        if self.run_dir is None:
            raise UserError("--resume: the trainer has no run folder to resume from")
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return  # killed before the first checkpoint: start from the beginning
        tensors, meta = load_checkpoint(path)
        apply_model_state(self.model, tensors, str(path))
        apply_optimizer_state(self.optimizer, tensors, meta, str(path))
        state = meta["trainer"]
        if state.get("seed") != self.seed:
            raise UserError(f"checkpoint {path}: made with seed {state.get('seed')} but this run "
                            f"has seed {self.seed}; resume with the run's own config")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.skipped_steps = int(state["skipped_steps"])
        self.history = list(state["history"])
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", [])):
            cb.load_state_dict(cb_state)
        self._restored = True
