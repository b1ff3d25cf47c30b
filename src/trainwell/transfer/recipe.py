"""The usual transfer recipe in one call.

Recipe (e.g. Géron, *Hands-On Machine Learning*, ch. 11; Howard & Ruder 2018): train the
new head with the reused layers frozen for a few epochs, so its random weights do not push
large gradients into the good reused ones; then unfreeze everything and fine-tune with a
lower learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import optim as tw_optim
from ..data.dataset import Dataset
from ..errors import UserError
from ..train import Trainer
from ..train.callbacks import Callback
from .layers import named_layers
from .unfreezing import FreezeThenFineTune

__all__ = ["FineTuneResult", "fine_tune", "body_layers"]


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns: the trained model, its history and test metrics."""

    model: nn.Module
    history: list[dict[str, Any]]
    test_metrics: dict[str, float]
    trainer: Any = field(repr=False, default=None)


def body_layers(model: nn.Module) -> int:
    """How many layers come before the output layer: the default set to freeze.

    Contract: the index of the layer named ``head`` in
    :func:`trainwell.transfer.named_layers`, else all layers but the last.

    Args:
        model: the model.

    Returns:
        The number of leading layers that form the body.
    """
    names = [n for n, _ in named_layers(model)]
    return names.index("head") if "head" in names else max(len(names) - 1, 0)


def fine_tune(
    model: nn.Module,
    data: Dataset,
    *,
    freeze_up_to: int | str | None = None,
    freeze_epochs: int = 5,
    epochs: int = 10,
    lr: float = 1e-3,
    lr_factor: float = 0.1,
    optimizer: str = "adam",
    batch_size: int = 64,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    **trainer_kwargs: Any,
) -> FineTuneResult:
    """Train the new head with the reused layers frozen, then fine-tune all at ``lr·lr_factor``.

    Contract: one :class:`~trainwell.train.Trainer` run of ``freeze_epochs + epochs`` epochs
    with a :class:`FreezeThenFineTune` callback: epochs ``0 .. freeze_epochs-1`` update only
    the unfrozen layers at ``lr``; from epoch ``freeze_epochs`` on all layers learn at
    ``lr · lr_factor``. The optimizer holds every parameter from the start (frozen ones get
    no gradient and no state until they unfreeze).

    Args:
        model: the model to train in place (e.g. from :func:`trainwell.transfer.reuse`).
        data: the new task's dataset.
        freeze_up_to: the layers to freeze first (count or name, as in
            :func:`trainwell.transfer.freeze`); default: every layer before ``head``.
        freeze_epochs: epochs of head-only training, >= 0.
        epochs: fine-tuning epochs after unfreezing, >= 0 (the total must be >= 1).
        lr: the learning rate of the first phase.
        lr_factor: multiplier of ``lr`` for the fine-tuning phase (> 0).
        optimizer: a name from :data:`trainwell.optim.OPTIMIZERS`.
        batch_size: samples per step.
        seed: the Trainer's seed (shuffling and dropout).
        callbacks: more callbacks, run after the freezing one.
        progress: show the progress bar.
        **trainer_kwargs: passed to :class:`~trainwell.train.Trainer` (``schedule``,
            ``clip``, ``device``, ``run_dir``, ...).

    Returns:
        A :class:`FineTuneResult`; ``test_metrics`` is empty when ``data.test`` is.

    Raises:
        UserError: negative epochs, a total of 0 epochs, or a bad layer selection.
    """
    if freeze_epochs < 0 or epochs < 0 or freeze_epochs + epochs < 1:
        raise UserError(
            f"fine_tune: need freeze_epochs >= 0, epochs >= 0 and at least one epoch in all; "
            f"got freeze_epochs={freeze_epochs}, epochs={epochs}"
        )
    up_to = body_layers(model) if freeze_up_to is None else freeze_up_to
    schedule_cb = FreezeThenFineTune(up_to, freeze_epochs=freeze_epochs, lr_factor=lr_factor)
    opt = tw_optim.build(optimizer, model.parameters(), lr=lr)
    trainer = Trainer(
        model,
        opt,
        epochs=freeze_epochs + epochs,
        batch_size=batch_size,
        seed=seed,
        callbacks=[schedule_cb, *callbacks],
        progress=progress,
        **trainer_kwargs,
    )
    history = trainer.fit(data)
    test = trainer.evaluate(data.test) if len(data.test) else {}
    return FineTuneResult(model, history, test, trainer)
