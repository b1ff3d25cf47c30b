"""``watch``: the doctor inside a user's own training loop.

Example:
    >>> with tw.doctor.watch(model, num_classes=10, probe_batch=(x_train, y_train)) as w:
    ...     for x, y in batches:
    ...         loss = F.cross_entropy(model(x), y)
    ...         optimizer.zero_grad()
    ...         loss.backward()
    ...         optimizer.step()
    ...         w.step(loss)            # after step(), before the next zero_grad()
    >>> w.findings()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..train.losses import resolve_loss
from .findings import Finding, Health
from .probe_batch import PROBE_SAMPLES, draw_probe_batch, probe_on_batch
from .probes import Probe, probe_schedule
from .rules import diagnose_health

__all__ = ["Watcher", "watch"]


class Watcher:
    """Probe a model from a hand-written loop; see :func:`watch`.

    The weights are copied when a probe step is armed (at the previous :meth:`step`), so
    the update ratio ‖ΔW‖/‖W‖ covers exactly the optimizer step in between. Gradients
    are read in :meth:`step`, i.e. after any clipping the loop applies.

    With ``probe_batch`` (training inputs and targets; 256 of them are drawn once, seeded)
    a probe step measures the model on that fixed batch instead of the training batch: at
    the :meth:`step` before it the Watcher runs its own forward and backward pass on the
    probe batch with ``loss`` (side-effect free: gradients, buffers and the random state
    are put back), and the update ratio covers the optimizer step that follows. Statistics
    then do not depend on the training batch size (at batch size 1 one sample leaves most
    ReLUs at 0 and can zero the first layer's gradient). Without it the training batch is
    probed, as the gradients the loop computed.

    Args:
        model: the model being trained.
        every: probe period in steps.
        num_classes: number of classes (chance level for the "fails to learn" test).
        loss: the loss name (``"cross_entropy"``, ``"nll"``, ``"bce"``, ``"mse"``, …).
        probe_batch: ``(x, y)`` training samples to probe on, or None.
        seed: which samples of ``probe_batch`` are drawn.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 10,
        num_classes: int | None = None,
        loss: str = "cross_entropy",
        probe_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model
        self._batch = None
        self._loss_fn = None
        if probe_batch is not None:
            task = "regression" if loss in ("mse", "mae", "huber") else "classification"
            self._loss_fn = resolve_loss(loss, task)[1]
            device = next(model.parameters()).device
            x, y = draw_probe_batch(probe_batch[0], probe_batch[1], seed=seed,
                                    samples=PROBE_SAMPLES)
            self._batch = (x.to(device), y.to(device))
        self.probe = Probe(model, every)
        head = self.probe.layers[-1] if self.probe.layers else None
        self.health = Health(
            layers=[info.meta() for info in self.probe.layers],
            context={
                "task": "regression" if loss == "mse" else "classification",
                "loss": loss,
                "num_classes": num_classes,
                "every": every,
                "skipped_steps": 0,
                "output_activation": head.activation if head else None,
                "out_features": head.fan_out if head else None,
            },
        )
        self.steps = 0
        self._pending = False  # a fixed-batch probe measured, its update ratio to come
        self._epoch = 0
        self._losses: list[torch.Tensor] = []

    def start(self) -> None:
        """Arm the first probe (done by ``with watch(...)``)."""
        if probe_schedule(0, self.probe.every):
            self._arm()

    def _arm(self) -> None:
        if self._batch is not None:  # measure on the fixed batch now (snapshots the weights)
            assert self._loss_fn is not None
            probe_on_batch(self.probe, self.model, self._loss_fn, self._batch)
            self._pending = True
            return
        self.probe.arm()
        self.probe.snapshot()

    def step(self, loss: torch.Tensor | float) -> None:
        """Close step ``self.steps``: keep the loss, finish a probe, arm the next one.

        Args:
            loss: the batch loss of this step (tensor or float).
        """
        value = loss.detach() if torch.is_tensor(loss) else torch.tensor(float(loss))
        self._losses.append(value)
        if self._pending or self.probe.armed:
            if not self._pending:  # the training batch's gradients, as the loop made them
                self.probe.grads()
            self._pending = False
            self.probe.update()
            self.health.probes.append(self.probe.record(self.steps, float(value), self._epoch))
        self.steps += 1
        if probe_schedule(self.steps, self.probe.every):
            self._arm()

    def end_epoch(self, **metrics: Any) -> None:
        """Optionally log per-epoch metrics (``val_accuracy``, ``val_loss``, …)."""
        self._flush()
        self.health.epochs.append({"epoch": self._epoch + 1, **metrics, "steps": 0})
        self._epoch += 1

    def _flush(self) -> None:
        if self._losses:
            self.health.losses += torch.stack(self._losses).double().cpu().tolist()
            self._losses = []

    def close(self) -> None:
        """Remove hooks and move pending losses to the record."""
        self.probe.disarm()
        self._flush()

    def findings(self) -> list[Finding]:
        """The findings of the rules on everything recorded so far."""

        self._flush()
        return diagnose_health(self.health)


@contextmanager
def watch(
    model: nn.Module,
    *,
    every: int = 10,
    num_classes: int | None = None,
    loss: str = "cross_entropy",
    probe_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
) -> Iterator[Watcher]:
    """Watch ``model``'s gradient health in a hand-written training loop.

    Call ``w.step(loss)`` once per optimizer step; ``w.findings()`` gives the diagnosis.
    Hooks are removed on exit, also after an exception.

    Args:
        model: the model being trained.
        every: probe period in steps (step 0 and every ``every``-th step).
        num_classes: number of classes, if a classification task.
        loss: the loss name, for the chance level (and the probe batch's loss).
        probe_batch: training samples to probe on (see :class:`Watcher`); recommended
            whenever the training batch is small.
        seed: which samples of ``probe_batch`` are drawn.

    Yields:
        A :class:`Watcher`.
    """
    w = Watcher(model, every=every, num_classes=num_classes, loss=loss,
                probe_batch=probe_batch, seed=seed)
    w.start()
    try:
        yield w
    finally:
        w.close()
