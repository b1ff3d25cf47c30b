"""The Trainer: a short, readable training loop with named events and exact resume.

One optimizer step reads top to bottom: forward → loss (+ penalty) → backward (× ``accumulate``
micro-batches) → unscale → event → clip → schedule → finite check → guarded optimizer step →
max-norm → event. The Trainer owns no technique: the optimizer, schedule, clipping and
penalty are plain objects passed in, and everything else (the doctor, transfer-learning
unfreezing) listens through :class:`Callback` events.

Nothing in the hot loop reads a device value on the host: per-step losses, predictions,
gradient norms and the non-finite flags stay on the device and are reduced once per epoch
(see :mod:`trainwell.train.guard` for how a flag makes a step a no-op).

Under ``torchrun`` the same loop trains data-parallel (see :mod:`trainwell.train.distributed`):
the model runs inside ``DistributedDataParallel``, each rank trains on its shard of every
global batch with its loss weighted so that DDP's gradient average is the global batch's
gradient, each step's loss is averaged over ranks, and only rank 0 writes and prints.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from operator import methodcaller
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import Dataset
from ..data.loaders import BatchSource, as_source, batch_size_of, epoch_seed
from ..errors import UserError
from ..optim import schedules as _schedules
from ..optim.clip import grad_norm
from .batch import default_forward, infer_task, map_inputs, targets
from .callbacks import Callback
from .checkpoint import atomic_write_text, save_checkpoint
from .distributed import (
    all_gather_bytes,
    all_reduce_sum,
    average_gradients,
    barrier,
    carrier_of,
    from_env,
    grad_sync,
    weight_rank_loss,
    wrap,
)
from .epoch_log import EpochLog
from .guard import NonFiniteGuard, has_batch_norm, run_failure
from .losses import predict_classes, resolve_loss
from .precision import autocast, check_precision, compile_model, make_scaler, warn_compile_fallback
from .progress import Progress
from .state import restore_state, trainer_state

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


class Trainer:
    """Fit a ``torch.nn.Module`` on in-memory tensors, a torch ``Dataset`` or a ``DataLoader``.

    Args:
        model: any ``nn.Module``.
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters.
        epochs: number of passes over the training data.
        batch_size: samples per forward pass when trainwell batches (in-memory data, a torch
            Dataset); a ``DataLoader`` keeps its own. The last smaller batch is kept, except
            a last batch of one sample when the model has batch norm: merged into the batch
            before (in memory) or dropped (torch data), with one warning.
        seed: seeds shuffling and dropout per epoch (see :func:`epoch_seed`).
        loss: ``"auto"``, ``"cross_entropy"``, ``"nll"`` (log-probabilities in), ``"bce"``
            or ``"mse"``; ignored when ``loss_fn`` is given.
        loss_fn: ``loss_fn(outputs, batch) -> scalar`` for models that are not "x in,
            logits out" (no train/val accuracy is computed then).
        forward: ``forward(model, batch) -> outputs``; default ``model(batch[0])`` or
            ``model(batch["x"])``.
        schedule: a callable ``step -> lr`` (see :mod:`trainwell.optim.schedules`), a
            ``Performance`` controller wrapping one, or None to keep the optimizer's learning
            rate. An unset ``total_steps`` is filled from the run's length and an unset base
            lr from the optimizer's groups; ``schedules.apply`` writes every group's lr.
        schedule_unit: ``"step"`` (called with the global optimizer-step index) or ``"epoch"``.
        plateau: a controller with ``update(metric)``, ``scale`` and ``state_dict`` (e.g.
            ``schedules.Performance``), fed the validation loss at each epoch end; its scale
            multiplies whatever the schedule gives.
        clip: a callable ``params -> grad norm before clipping`` (``optim.clip.build``).
        penalty: a callable ``model -> penalty`` added to the loss (once per optimizer step)
            and logged apart.
        max_norm: a callable ``model -> None`` applied after each step (max-norm constraint).
        log_grad_norm: log the global gradient norm each step even without clipping.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; fp16 adds a GradScaler,
            see :mod:`trainwell.train.precision`).
        accumulate: micro-batches per optimizer step; the gradient equals that of one batch
            of all their samples (sample-weighted mean), up to float rounding, for models
            without batch norm.
        compile: run the model through ``torch.compile``; falls back to the plain model
            with one warning where compile is unavailable.
        num_workers: DataLoader workers when trainwell wraps a torch Dataset.
        callbacks: :class:`Callback` objects, called in order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go; None writes nothing.
        checkpoint_every: write a checkpoint every this many epochs (and at the end).
        checkpoint_every_steps: also write one every this many optimizer steps inside an
            epoch (None: only at epoch ends), from which a resume continues at the next batch.
        progress: show a progress bar.
        augment: ``augment(x, generator) -> x`` applied on the device to each training
            batch's inputs before the forward pass (e.g. :class:`trainwell.data.augment.Augment`),
            never in :meth:`evaluate`. Its generator lives on the device and is seeded per
            epoch from ``epoch_seed(seed, epoch) + 2`` (plus the rank under torchrun), so a
            resumed run draws the same augmentations.
        sync_batch_norm: under torchrun on CUDA, convert batch norm to ``SyncBatchNorm`` (statistics
            over the global batch); by default each rank's batch norm sees only its shard.
            A no-op in one process; under torchrun on the CPU a ``ValueError`` (torch's
            SyncBatchNorm runs on GPUs only).

    Data parallel: started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), the
    Trainer joins the process group (:func:`~trainwell.train.distributed.from_env`), wraps
    the model in ``DistributedDataParallel`` and treats ``batch_size`` as the global batch.
    Callbacks run on every rank; only rank 0 keeps ``run_dir`` (on other ranks it is None, so
    nothing writes there), while every rank reads the checkpoint on resume. In-memory
    validation data are sharded like training and their sums all-reduced; torch validation
    data are evaluated whole on every rank (the weights are the same everywhere). Dropout
    draws from the same per-epoch seed on every rank and augmentation from a per-rank one:
    with either, the weights match a one-process run in distribution, not in value.

    Attributes:
        failure: after ``fit``, None, or one line saying why the run failed (most steps
            skipped, or a non-finite final loss); a command line maps it to exit code 1.

    Gradient accumulation under DDP: the micro-batches before an optimizer step's last run
    inside DDP's ``no_sync()``, so each optimizer step all-reduces the gradients once.

    Resume: checkpoints are taken at epoch ends, and with ``checkpoint_every_steps`` also
    after every that many optimizer steps inside an epoch; ``fit(resume=True)`` continues
    from the newest one. The epoch's order is a pure function of (seed, epoch) for
    in-memory data and map-style torch Datasets, so the result is bit-identical: a
    mid-epoch checkpoint holds the batch to continue at, the epoch's metrics so far and the
    random-number generators' states (torch's, CUDA's, the augmentation's; per rank under
    torchrun, which must resume with as many processes), and the batches already trained
    are skipped without loading them (a user's own DataLoader loads and drops them). Two
    limits: a Dataset whose ``__getitem__`` draws random numbers in DataLoader workers draws
    new ones for the rest of a resumed epoch; and an ``IterableDataset`` gets no mid-epoch
    checkpoints (a stream cannot be rewound; one warning): its resume restarts the
    interrupted epoch, exact only if its stream is a function of the epoch (see
    :mod:`trainwell.data.loaders`). Callbacks that collect per-step values over an epoch
    keep them across a mid-epoch resume only if their ``state_dict`` holds them.

    Example:
        >>> trainer = Trainer(model, optimizer, epochs=20, batch_size=128, seed=0)
        >>> history = trainer.fit(data)      # list of per-epoch metric dicts
        >>> trainer.evaluate(data.test)      # {"loss": ..., "accuracy": ...}
        >>> trainer.fit(DataLoader(images, batch_size=64, shuffle=True, num_workers=4),
        ...             val=val_images)
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 epochs: int, batch_size: int, seed: int = 0, loss: str = "auto",
                 loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                 forward: Callable[[torch.nn.Module, Any], Any] | None = None,
                 schedule: Callable[[int], float] | None = None, schedule_unit: str = "step",
                 plateau: Any = None, clip: Callable | None = None, penalty: Callable | None = None,
                 max_norm: Callable | None = None, log_grad_norm: bool = False,
                 precision: str = "fp32", accumulate: int = 1, compile: bool = False,
                 num_workers: int = 0,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "auto",
                 run_dir: str | Path | None = None, checkpoint_every: int = 1,
                 checkpoint_every_steps: int | None = None, progress: bool = True,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 sync_batch_norm: bool = False) -> None:
        if epochs < 1:
            raise UserError(f"epochs: must be >= 1, got {epochs}")
        if batch_size < 1:
            raise UserError(f"batch_size: must be >= 1, got {batch_size}")
        if schedule_unit not in ("step", "epoch"):
            raise UserError(f"schedule_unit: must be 'step' or 'epoch', got {schedule_unit!r}")
        check_precision(precision)
        if int(accumulate) < 1:
            raise ValueError(f"accumulate: must be >= 1, got {accumulate}")
        if checkpoint_every_steps is not None and int(checkpoint_every_steps) < 1:
            raise ValueError(f"checkpoint_every_steps: must be >= 1 or None, "
                             f"got {checkpoint_every_steps}")
        self.device = resolve_device(device)
        self.dist = from_env(self.device)
        if self.dist.active and self.device.type == "cuda":  # one GPU per process
            self.device = torch.device("cuda", self.dist.local_rank)
        # Module.to walks every module in Python (~1 ms for an 8-layer MLP): only when needed
        on_device = all(t.device == self.device
                        for t in itertools.chain(model.parameters(), model.buffers()))
        self.model = model if on_device else model.to(self.device)
        self.optimizer = optimizer
        self.epochs, self.batch_size, self.seed = int(epochs), int(batch_size), int(seed)
        self.loss_name = "custom" if loss_fn is not None else loss
        self.user_loss, self.forward = loss_fn, forward or default_forward
        self.schedule_unit = schedule_unit
        self.schedule, self.plateau = _schedules.split_plateau(schedule, plateau)
        self.clip, self.penalty, self.max_norm = clip, penalty, max_norm
        self.log_grad_norm = log_grad_norm
        self.precision, self.accumulate, self.num_workers = precision, int(accumulate), num_workers
        self.scaler = make_scaler(precision, self.device)
        if self.dist.active and penalty is not None and self.accumulate > 1:
            # Its gradient is added by a backward outside DDP's forward, which DDP refuses.
            raise ValueError("penalty: with accumulate > 1 it cannot run under torchrun; "
                             "use accumulate = 1 or a larger global batch")
        # DDP only adds the gradient all-reduce: evaluation, checkpoints and the doctor's hooks
        # use self.model, so nothing outside the training step waits for other ranks.
        self._ddp = wrap(self.model, self.dist, self.device, sync_batch_norm)
        self.augment = augment
        self._net = compile_model(self._ddp) if compile else self._ddp
        self._carrier = carrier_of(self._ddp)  # DDP: carries each step's loss (see LossCarrier)
        self._compile_pending = self._net is not self.model  # a lazy compile may fail at call 1
        self.callbacks = list(callbacks)
        self._resume_dir = Path(run_dir) if run_dir is not None else None  # read by every rank
        self.run_dir = self._resume_dir if self.dist.is_main else None  # written by rank 0
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.checkpoint_every_steps = None if checkpoint_every_steps is None \
            else int(checkpoint_every_steps)
        self._mid_every = 0  # steps between mid-epoch checkpoints for this data (0: none)
        self._resume_at: dict[str, Any] | None = None  # a mid-epoch checkpoint's position
        self.show_progress = progress and self.dist.is_main
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps (global step index)
        self.skipped_steps = 0  # steps skipped for a non-finite loss or gradient (any cause)
        self.stop_training = False
        self.failure: str | None = None
        self.history: list[dict[str, Any]] = []
        self.task: str | None = None
        self.loss_fn: Callable | None = None
        self._last_norm: torch.Tensor | None = None
        self._guard = NonFiniteGuard(self.model, optimizer, self.device)
        self._has_bn = has_batch_norm(self.model)
        self._warned: set[str] = set()
        self._train_src: BatchSource | None = None
        self._val_src: BatchSource | None = None
        self._restored = False

    @property
    def last_grad_norm(self) -> float | None:
        """The last step's gradient norm before clipping (reading it syncs; for callbacks)."""
        return None if self._last_norm is None else float(self._last_norm)

    # -- public API -------------------------------------------------------------------
    def fit(self, data: Any, *, val: Any = None, resume: bool = False,
            until: int | None = None) -> list[dict[str, Any]]:
        """Train for the remaining epochs; return the history (one dict per epoch).

        Args:
            data: a :class:`~trainwell.data.Dataset` (its ``val`` split validates), an
                ``(x, y)`` pair of tensors, a torch ``Dataset`` or a ``DataLoader``.
            val: validation data of any of those kinds but a trainwell Dataset; overrides
                ``data.val``.
            resume: with a checkpoint in ``run_dir``, restore model, optimizer, scaler,
                counters, history and callback state first and continue from there.
            until: pause once this many epochs are done, while the run keeps its full
                length ``epochs`` (schedules, the final checkpoint): a later ``fit``
                continues the same run, epoch for epoch, as one uninterrupted call would.

        After it returns, :attr:`failure` says whether the run failed.
        """
        steps_per_epoch = self.check(data, val=val)
        if resume and not self._restored:
            self.restore()
        metrics_path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        if metrics_path is not None:  # the log holds exactly the checkpointed epochs
            atomic_write_text(metrics_path, "".join(json.dumps(h) + "\n" for h in self.history))
        for cb in self.callbacks:
            cb.on_fit_start(self)
        stop = self.epochs if until is None else min(int(until), self.epochs)
        bar = Progress(self.epochs, steps_per_epoch or 0, enabled=self.show_progress)
        checkpoints = self._resume_dir is not None  # every rank waits for rank 0's checkpoint
        with bar:
            while self.epoch < stop and not self.stop_training:
                metrics = self._train_epoch(bar)
                self.history.append(metrics)
                self.epoch += 1
                if metrics_path is not None:
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(metrics) + "\n")
                if checkpoints and (self.epoch % self.checkpoint_every == 0
                                    or self.epoch in (stop, self.epochs) or self.stop_training):
                    if self.run_dir is not None:
                        save_checkpoint(self.run_dir, self.epoch, self.model, self.optimizer,
                                        trainer_state(self))
                    # Every rank waits for rank 0's checkpoint to be on disk: a killed job
                    # resumes from an epoch all ranks finished, and no rank leaves fit() (and
                    # tears the group down) while rank 0 is still writing.
                    barrier(self.dist)
        self.failure = run_failure(self.history, self.skipped_steps, self.step)
        for cb in self.callbacks:
            cb.on_fit_end(self, self.history)
        return self.history

    def check(self, data: Any, *, val: Any = None) -> int | None:
        """Check that ``data`` fits this trainer (loss, schedule length) before any training.

        Returns:
            The number of optimizer steps per epoch, or None for an iterable of unknown
            length (whose schedule length cannot be checked ahead).

        Raises:
            UserError: an empty training split, a loss that does not fit the task, or a
                fixed-length schedule whose length differs from the run's.
            TypeError: ``data`` is not a kind of data the Trainer takes.
        """
        task: str | None = None
        if isinstance(data, Dataset):
            task, train, val = data.task, data.train, (data.val if val is None else val)
        else:
            train = data
        src = as_source(train, batch_size=self.batch_size, seed=self.seed, device=self.device,
                        num_workers=self.num_workers, merge_single=self._has_bn,
                        rank=self.dist.rank, world_size=self.dist.world_size)
        self._train_src = src
        # Under DDP in-memory validation is sharded like training and summed in evaluate():
        # a rank validating everything would spend twice the share of its epoch on it.
        in_memory_val = val is not None and self._eval_batch(val) == _EVAL_BATCH
        self._val_src = None if val is None else as_source(
            val, batch_size=self._eval_batch(val), seed=self.seed, device=self.device,
            num_workers=self.num_workers, shuffle=False, rank=self.dist.rank,
            world_size=self.dist.world_size if in_memory_val else 1)
        if task is None and src.split is not None:
            task = infer_task(self.loss_name, src.split.y)
        if task is not None:  # else the first batch's targets tell (see _train_epoch)
            self._set_task(task)
        if src.num_samples == 0:
            raise UserError("data: the training split is empty; use more samples")
        if src.merged or src.dropped:
            what = (f"merged into the batch before ({self.batch_size + 1} samples)" if src.merged
                    else "dropped each epoch")
            self._warn_once("bn", "the last batch would hold one sample, which batch norm cannot "
                            f"train on: it is {what}")
        self._mid_every = 0
        if self.checkpoint_every_steps is not None and self._resume_dir is not None:
            if src.resumable_mid_epoch and src.num_batches is not None:
                self._mid_every = self.checkpoint_every_steps
            else:
                self._warn_once("mid-epoch", "checkpoint_every_steps: an IterableDataset cannot "
                                "be rewound to a batch, so checkpoints stay at epoch ends; a "
                                "resume restarts the interrupted epoch")
        if src.num_batches is None:
            return None
        steps_per_epoch = math.ceil(src.num_batches / self.accumulate)
        self._check_schedule_length(steps_per_epoch)
        return steps_per_epoch

    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Mean loss (and accuracy for classification) of the model on ``data``.

        ``data``: a Split, an ``(x, y)`` pair, a torch Dataset or a DataLoader; or a
        :class:`BatchSource` sharded over ranks (the Trainer's in-memory validation under
        DDP), whose sums are all-reduced, so every rank must call this together.
        """
        src = data if isinstance(data, BatchSource) else as_source(
            data, batch_size=self._eval_batch(data), seed=self.seed, device=self.device,
            num_workers=self.num_workers, shuffle=False)
        if src.num_samples == 0:
            return {}
        if self.user_loss is None and self.loss_fn is None:
            raise RuntimeError("evaluate() needs the loss: call fit() first")
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = 0
        classify = self.task == "classification" and self.user_loss is None
        for batch in src.epoch(0, self.device, shuffle=False):
            size = batch_size_of(batch)
            if size == 0:  # a rank's empty shard of a short batch
                continue
            out, loss = self._forward_loss(batch, train=False)
            loss_sum += loss.double() * size
            n += size
            if classify:
                y = targets(batch)
                correct += (predict_classes(self.loss_name, out) == y.reshape(-1)).sum()
        self.model.train(was_training)
        if src.world_size > 1:
            sums = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(float(n))])
            loss_sum, correct, total = all_reduce_sum(sums, self.dist)
            n = int(total)
        result = {"loss": float(loss_sum) / max(n, 1)}
        if classify:
            result["accuracy"] = int(correct) / max(n, 1)
        return result

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs for ``x`` in eval mode, batched, on the CPU."""
        was_training = self.model.training
        self.model.eval()
        outs = []
        for s in range(0, len(x), _EVAL_BATCH):
            with autocast(self.precision, self.device):
                out = self._run(methodcaller("__call__", x[s:s + _EVAL_BATCH].to(self.device)),
                                train=False)
            outs.append((out.float() if self.precision != "fp32" else out).cpu())
        self.model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0)

    # -- one epoch ----------------------------------------------------------------------
    def _train_epoch(self, bar: Progress) -> dict[str, Any]:
        epoch = self.epoch
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        # Dropout, augmentation and a user DataLoader's own shuffling draw from torch's global
        # RNG: seeding it per epoch makes them a function of (seed, epoch), hence resumable.
        torch.manual_seed(epoch_seed(self.seed, epoch) + 1)
        augment, gen = self._epoch_augment(epoch)
        resume, self._resume_at = self._resume_at, None  # set by restore() from a mid-epoch one
        start = resume["batch"] if resume is not None else 0
        restore = None if resume is None else (lambda: self._restore_rng(resume["rng"], gen))
        self.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # per-step values stay on the device until the epoch's end
        log = EpochLog() if resume is None else EpochLog.from_state(resume["log"], self.device)
        bar.start_epoch(epoch)
        t0 = time.perf_counter()
        lr = self._apply_schedule(epoch) if self.schedule_unit == "epoch" else None
        k = self.accumulate
        last = self._train_src.num_batches if self._train_src is not None else None
        every = self._mid_every
        group: list[tuple[torch.Tensor, int]] = []  # (weighted loss, samples) of this step
        for i, (batch, n) in enumerate(self._batches(epoch, start, restore), start):
            if i % k == 0:
                self._guard.save_buffers()  # BN statistics, restored if the step is skipped
            if augment is not None:
                batch = map_inputs(batch, augment)
            local = batch_size_of(batch)  # n: the global batch (this rank's shard: local)
            # DDP all-reduces at a step's last micro-batch only (the epoch's last counts too)
            with grad_sync(self._ddp, k == 1 or (i + 1) % k == 0 or i + 1 == last):
                out, loss = self._forward_loss(batch)
                # Each micro-batch weighs n / (k·n₀) so that k full micro-batches give the mean
                # over all k·n₀ samples; a short last group is rescaled in _optimizer_step.
                weighted = loss if k == 1 else loss * (n / (k * (group[0][1] if group else n)))
                weighted = weight_rank_loss(weighted, local, n, self.dist)  # DDP: × n_r·W/n
                total = weighted
                if i % k == 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.penalty is not None and k == 1:  # with k > 1: see _optimizer_step
                        pen = self.penalty(self.model)
                        total = weighted + pen
                        log.penalties.append(pen.detach())
                if self._carrier is not None:
                    if i % k == 0:
                        self._carrier.carrier.grad = None
                    total = (self.scaler.scale(total) if self.scaler is not None else total) \
                        + self._carrier.term(weighted)
                elif self.scaler is not None:
                    total = self.scaler.scale(total)
                total.backward()
            group.append((weighted.detach(), n))
            if local:  # the log keeps this rank's mean losses and counts (summed at epoch end)
                log.losses.append(loss.detach())
                log.sizes.append(local)
                if self.task == "classification" and self.user_loss is None:
                    log.predictions.append(predict_classes(self.loss_name, out.detach()))
                    log.targets.append(targets(batch))
            if len(group) == k:
                lr = self._optimizer_step(params, group, log, lr, bar)
                group = []
                if every and self.step % every == 0 and last is not None and i + 1 < last:
                    self._save_mid_epoch(i + 1, log, gen)
        if group:
            if last is None and k > 1:  # a stream's short last group: all ran in no_sync()
                carried = [] if self._carrier is None else [self._carrier.carrier]
                average_gradients(params + carried, self.dist)
            lr = self._optimizer_step(params, group, log, lr, bar)
        seconds = time.perf_counter() - t0
        return self._epoch_metrics(epoch, log, lr, seconds, bar)

    def _optimizer_step(self, params: list[torch.Tensor], group: list[tuple[torch.Tensor, int]],
                        log: EpochLog, lr: float | None, bar: Progress) -> float | None:
        """Unscale, event, clip, schedule, check and apply one optimizer step."""
        samples = sum(n for _, n in group)
        full = self.accumulate * group[0][1]
        if self._carrier is not None:
            # The global batch's loss on every rank (DDP averaged it with the gradients):
            # logged, given to callbacks, and checked by the guard with the (already
            # averaged) gradients, so every rank skips alike.
            step_loss = self._carrier.take()
        else:
            step_loss = group[0][0] if len(group) == 1 else \
                torch.stack([t for t, _ in group]).sum()
        if samples != full:  # a short last group: make it the mean over its own samples
            torch._foreach_mul_([p.grad for p in params if p.grad is not None], full / samples)
            step_loss = step_loss * (full / samples)
        if self.penalty is not None and self.accumulate > 1:
            # Once per optimizer step and after the rescale above, as with one big batch.
            pen = self.penalty(self.model)
            log.penalties.append(pen.detach())
            (self.scaler.scale(pen) if self.scaler is not None else pen).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        log.step_sizes.append(samples)
        for cb in self.callbacks:
            cb.on_after_backward(self, self.step)
        if self.clip is not None:
            self._last_norm = self.clip(params)
            log.norms.append(self._last_norm)
        elif self.log_grad_norm:
            self._last_norm = grad_norm(params)
            log.norms.append(self._last_norm)
        if self.schedule_unit == "step":
            lr = self._apply_schedule(self.step)
        checked = step_loss if self.penalty is None else step_loss + log.penalties[-1]
        finite = self._guard.check(self.step, checked, params)
        max_norm = self.max_norm
        after = None if max_norm is None else (lambda: max_norm(self.model))
        self._guard.step(finite, after)
        if self.scaler is not None:  # consumes the found_inf of unscale_, on the device
            self.scaler.update()
        for cb in self.callbacks:
            cb.on_step_end(self, self.step, step_loss)
        self.step += 1
        bar.advance(step_loss)
        return lr

    def _epoch_metrics(self, epoch: int, log: EpochLog, lr: float | None, seconds: float,
                       bar: Progress) -> dict[str, Any]:
        """Reduce the epoch's device-side values once, validate, fire ``on_epoch_end``."""
        metrics: dict[str, Any] = {"epoch": epoch + 1, **log.reduce(self.device, self.dist)}
        if self._val_src is not None:
            for key, value in self.evaluate(self._val_src).items():
                metrics[f"val_{key}"] = value
        metrics["lr"] = self.optimizer.param_groups[0]["lr"] if lr is None else lr
        self._count_skipped()
        metrics["skipped_steps"] = self.skipped_steps
        metrics.update(log.norm_metrics())  # the clipper computes them anyway: free to log
        if self.scaler is not None:
            metrics["loss_scale"] = float(self.scaler.get_scale())
        metrics["epoch_time_s"] = seconds
        n = sum(log.step_sizes)  # the global batches' samples, on every rank
        metrics["samples_per_s"] = n / seconds if seconds > 0 else float("inf")
        if self.plateau is not None:
            self.plateau.update(metrics.get("val_loss", metrics.get("train_loss")))
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, metrics)
        bar.end_epoch(metrics)
        return metrics

    def _count_skipped(self) -> None:
        """Read the guard's flags so far (one sync): count skipped steps, warn about the first."""
        skipped, line = self._guard.end_epoch(quiet_gradients=self.scaler is not None)
        self.skipped_steps += skipped
        if line is not None:
            warnings.warn(line, RuntimeWarning, stacklevel=5)

    def _save_mid_epoch(self, batch: int, log: EpochLog, gen: torch.Generator | None) -> None:
        """Checkpoint inside the epoch, after ``batch`` batches of it (a step's end).

        Beside the usual state: the position (``batch``), every rank's epoch log so far and
        its RNG states (gathered to rank 0, which writes). Every rank waits for the write.
        """
        self._count_skipped()  # the count goes in the checkpoint; the epoch's end adds the rest
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if gen is not None:
            rng["augment"] = gen.get_state()
        mine = json.dumps({"log": log.state_dict(),
                           "rng": {k: v.numpy().tobytes().hex() for k, v in rng.items()}})
        ranks = [json.loads(b) for b in all_gather_bytes(mine.encode(), self.dist, self.device)]
        if self.run_dir is not None:
            tensors = {f"rng/{key}/{r}": torch.frombuffer(bytearray.fromhex(raw), dtype=torch.uint8)
                       for r, part in enumerate(ranks) for key, raw in part["rng"].items()}
            position = {"batch": batch, "world_size": self.dist.world_size,
                        "logs": [part["log"] for part in ranks]}
            save_checkpoint(self.run_dir, self.epoch, self.model, self.optimizer,
                            {**trainer_state(self), "position": position}, step=self.step,
                            extra_tensors=tensors)
        barrier(self.dist)

    def _restore_rng(self, rng: dict[str, torch.Tensor], gen: torch.Generator | None) -> None:
        """Put back the RNG states a mid-epoch checkpoint saved (a state of another device's
        generator, after a resume on another device, is left as seeded)."""
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if gen is not None and "augment" in rng:
            try:
                gen.set_state(rng["augment"])
            except (RuntimeError, ValueError):  # a CPU generator's state on a CUDA one
                pass

    def _epoch_augment(self, epoch: int) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None,
                                                   torch.Generator | None]:
        """The epoch's augmentation and its generator: a function of (seed, epoch, rank)."""
        augment = self.augment
        if augment is None:
            return None, None
        gen = torch.Generator(device=self.device)  # on the device: the draws cost no copy
        gen.manual_seed(epoch_seed(self.seed, epoch) + 2 + self.dist.rank)
        return (lambda x: augment(x, gen)), gen

    def _batches(self, epoch: int, start: int = 0,
                 restore: Callable[[], None] | None = None) -> Iterator[tuple[Any, int]]:
        """``(batch, samples of its global batch)`` of ``epoch``; no one-sample BN batches.

        One process: the global batch is the batch. Under DDP it is the source's known global
        size, or for a user's own DataLoader (whose ranks' batches DDP averages plainly)
        world_size × the local size.
        """
        assert self._train_src is not None, "call check() or fit() first"
        src = self._train_src
        in_memory = src.split is not None
        world = self.dist.world_size
        for batch in src.epoch(epoch, self.device, start=start, restore=restore):
            n = batch_size_of(batch)
            if self._has_bn and not in_memory and n == 1 and not self.dist.active:
                self._warn_once("bn", "a batch of one sample, which batch norm cannot train on, "
                                "was dropped (this warning is shown once)")
                continue
            whole = src.current_global_size if self.dist.active else None
            yield batch, (whole if whole is not None else n * world)

    def _forward_loss(self, batch: Any, train: bool = True) -> tuple[Any, torch.Tensor]:
        """Outputs and loss of ``batch`` under the run's precision (``train``: through DDP)."""
        with autocast(self.precision, self.device):
            out = self._run(lambda net: self.forward(net, batch), train)
            if self.user_loss is not None:
                return out, self.user_loss(out, batch)
            y = targets(batch)
            if y is None:
                raise TypeError("batches without targets need loss_fn(outputs, batch)")
            if self.loss_fn is None:  # torch data: the first targets tell the task
                self._set_task(infer_task(self.loss_name, y))
            assert self.loss_fn is not None
            return out, self.loss_fn(out, y)

    def _run(self, fn: Callable[[torch.nn.Module], Any], train: bool = True) -> Any:
        """``fn(net)``; the first call of a compiled model falls back to eager if it fails.

        Off the training step (``train=False``) under DDP the plain model runs: DDP's forward
        may talk to other ranks, and evaluation on one rank must never wait for the others.
        """
        if not train and self.dist.active:
            return fn(self.model)
        if self._compile_pending:
            self._compile_pending = False
            try:
                return fn(self._net)
            except Exception as e:  # compile errors surface at the first call
                warn_compile_fallback(e)
                self._net = self._ddp
        return fn(self._net)

    def _set_task(self, task: str) -> None:
        self.task = task
        if self.user_loss is None:
            self.loss_name, self.loss_fn = resolve_loss(self.loss_name, task)

    def _warn_once(self, key: str, line: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(line, RuntimeWarning, stacklevel=4)

    def _eval_batch(self, data: Any) -> int:
        # In-memory data are evaluated in big slices; torch data keep the training batch size
        # (their samples may be large, e.g. images).
        from_memory = isinstance(data, (tuple, list)) or hasattr(data, "x")
        return _EVAL_BATCH if from_memory else self.batch_size

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

    def restore(self) -> None:
        """Load the newest checkpoint of ``run_dir`` (model, optimizer, scaler, counters, history).

        ``fit(data, resume=True)`` calls it when it has not been called yet; calling it
        first lets a caller verify the checkpoint before writing anything. With no
        checkpoint yet (a run killed during its first epoch) training starts over.

        Raises:
            UserError: a corrupt checkpoint, or one from another model or seed.
        """
        if self._resume_dir is None:
            raise UserError("--resume: the trainer has no run folder to resume from")
        self._restored = restore_state(self, self._resume_dir) or self._restored

