"""Trainer callbacks that unfreeze layers on a schedule of epochs.

Both callbacks keep **every parameter in the optimizer from the start** and only toggle
``requires_grad``: a frozen parameter has no gradient, so the optimizer skips it and gives it
no state; once unfrozen it gets a gradient and the optimizer starts its state then (Adam's
moments from zero, as for a fresh optimizer). No parameter groups are added during training,
which keeps ``optimizer.state_dict()`` and exact resume simple. Build the optimizer over
``model.parameters()`` (or :func:`trainwell.transfer.param_groups`), not over the
trainable parameters only; :meth:`on_fit_start` checks this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..errors import UserError
from ..train.callbacks import Callback
from .freeze import freeze, frozen_layers, unfreeze
from .layers import named_layers, select_layers

__all__ = ["GradualUnfreezing", "FreezeThenFineTune"]


class GradualUnfreezing(Callback):
    """Unfreeze groups of layers at given epochs (all params stay in the optimizer).

    Contract: at fit start every layer named in ``schedule`` is frozen; at the start of
    epoch ``e`` every layer scheduled at an epoch ``<= e`` is unfrozen. Layers the schedule
    does not name are left as they are (e.g. the new head trains throughout). A resumed
    run reaches the same state from the schedule alone.

    Args:
        schedule: ``{epoch: layers}``, layers being one index/name or a list of them, e.g.
            ``{2: "blocks.2", 4: ["blocks.1"], 6: [0]}``.

    Example:
        >>> cb = GradualUnfreezing.top_down(model, every=2)  # doctest: +SKIP
    """

    def __init__(self, schedule: Mapping[int, int | str | Sequence[int | str]]) -> None:
        self.schedule: dict[int, list[int | str]] = {}
        for epoch, layers in schedule.items():
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise UserError(f"GradualUnfreezing: epoch keys must be ints >= 0, got {epoch!r}")
            items = [layers] if isinstance(layers, (int, str)) else list(layers)
            self.schedule[epoch] = items

    @classmethod
    def top_down(
        cls, model: nn.Module, *, every: int = 1, start: int = 1, keep: int = 1
    ) -> GradualUnfreezing:
        """The ULMFiT-style schedule: unfreeze one more layer, from the top, every few epochs.

        Contract: the last ``keep`` layers (the head) train from epoch 0; the layer below them
        unfreezes at epoch ``start``, the next at ``start + every``, and so on down to layer 0.

        Args:
            model: the model, to count its layers.
            every: epochs between two unfreezings, >= 1.
            start: the epoch of the first unfreezing, >= 0.
            keep: how many top layers are never frozen, >= 0.

        Returns:
            The callback.

        Raises:
            UserError: ``every < 1``, ``start < 0`` or ``keep < 0``.
        """
        if every < 1 or start < 0 or keep < 0:
            raise UserError(
                f"GradualUnfreezing.top_down: need every >= 1, start >= 0, keep >= 0; "
                f"got every={every}, start={start}, keep={keep}"
            )
        names = [n for n, _ in named_layers(model)]
        below = names[: max(len(names) - keep, 0)]
        return cls({start + j * every: [name] for j, name in enumerate(reversed(below))})

    def on_fit_start(self, trainer: Any) -> None:
        """Check the optimizer holds every scheduled parameter, then freeze them."""
        model = trainer.model
        for layers in self.schedule.values():
            for name, layer in select_layers(model, layers=layers, what="GradualUnfreezing"):
                _check_in_optimizer(trainer.optimizer, layer, name, "GradualUnfreezing")
        for layers in self.schedule.values():
            freeze(model, layers=layers)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Unfreeze every layer whose epoch has come."""
        for e in sorted(self.schedule):
            if e <= epoch:
                unfreeze(trainer.model, layers=self.schedule[e])

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        """Add ``frozen_layers`` (a count) to the epoch's metrics."""
        metrics["frozen_layers"] = len(frozen_layers(trainer.model))


class FreezeThenFineTune(Callback):
    """The usual transfer recipe in one run: train the head, then fine-tune all with a lower LR.

    Contract: during epochs ``0 .. freeze_epochs-1`` the selected (reused) layers are frozen;
    at the start of epoch ``freeze_epochs`` they are unfrozen and every parameter group's
    ``lr_scale`` is multiplied by ``lr_factor``; the Trainer's one lr writer
    (``trainwell.optim.schedules.apply``) turns that into η = lr_scale · schedule(t), so
    any schedule or plateau controller keeps its shape, scaled. The switch is recorded in
    :meth:`state_dict`, so a resumed run neither repeats nor misses it (the optimizer's
    saved groups already carry the scaled ``lr_scale``).

    Args:
        up_to: the reused layers to freeze first: a count of leading layers or the name of
            the last one (see :func:`trainwell.transfer.freeze`).
        freeze_epochs: epochs of head-only training, >= 0.
        lr_factor: learning-rate multiplier for the fine-tuning phase, > 0 (e.g. 0.1).
    """

    def __init__(self, up_to: int | str, *, freeze_epochs: int, lr_factor: float = 0.1) -> None:
        if freeze_epochs < 0:
            raise UserError(f"transfer.freeze_epochs: must be >= 0, got {freeze_epochs}")
        if not lr_factor > 0:
            raise UserError(f"transfer.fine_tune_lr_factor: must be > 0, got {lr_factor}")
        self.up_to = up_to
        self.freeze_epochs = int(freeze_epochs)
        self.lr_factor = float(lr_factor)
        self.switched = False

    def on_fit_start(self, trainer: Any) -> None:
        """Freeze the reused layers unless the switch already happened (resume)."""
        if self.switched:
            unfreeze(trainer.model, self.up_to)
            return
        for name, layer in select_layers(trainer.model, self.up_to, what="transfer.freeze"):
            _check_in_optimizer(trainer.optimizer, layer, name, "FreezeThenFineTune")
        if self.freeze_epochs > 0:
            freeze(trainer.model, self.up_to)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """At epoch ``freeze_epochs``: unfreeze and multiply every ``lr_scale`` by ``lr_factor``."""
        if self.switched or epoch < self.freeze_epochs:
            return
        unfreeze(trainer.model, self.up_to)
        if self.freeze_epochs > 0:  # with no head phase the run is plain fine-tuning at lr
            for group in trainer.optimizer.param_groups:
                # lr_scale only: schedules.apply writes group["lr"] from it before each step.
                group["lr_scale"] = group.get("lr_scale", 1.0) * self.lr_factor
        self.switched = True

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        """Add ``frozen_layers`` (a count) to the epoch's metrics."""
        metrics["frozen_layers"] = len(frozen_layers(trainer.model))

    def state_dict(self) -> dict[str, Any]:
        """Whether the switch to fine-tuning has happened."""
        return {"switched": self.switched}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.switched = bool(state.get("switched", False))


def _check_in_optimizer(optimizer: Any, layer: nn.Module, name: str, who: str) -> None:
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for pname, p in layer.named_parameters():
        if id(p) not in held:
            raise UserError(
                f"{who}: parameter {name}.{pname} is not in the optimizer; build the optimizer "
                "over model.parameters() (frozen ones included) so unfrozen layers can learn"
            )
