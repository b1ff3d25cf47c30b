"""Repairing overfitting that only the full look finds, without training again.

The full look (see :mod:`.repair_loop`) continues the diagnostic run to the config's whole
budget; overfitting that appears only there leaves no budget for trials. Early stopping
with ``restore_best`` — overfitting's first repair — needs none: until it stops, an
early-stopped run *is* the run the full look trained (same seed, each epoch's shuffling
seeded by the seed and the epoch), and what it keeps is that run's weights at its best
epoch. :class:`EarlyStopReplay` rides along the full look with early stopping's own
bookkeeping but never stops the run: it records the epoch at which early stopping would
have stopped and clones the weights it would have restored. :func:`repair_late_overfitting`
then evaluates those weights; the result is exactly what rerunning ``repaired.toml`` (the
config with ``train.early_stopping``) gives, at no extra epoch.
"""

from __future__ import annotations

from typing import Any

from ..config import Config, apply_patch
from ..doctor.repairs import EARLY_STOPPING, REPAIRS
from ..train.early_stopping import EarlyStopping
from .yardstick import judge

__all__ = ["EarlyStopReplay", "attach_replay", "repair_late_overfitting"]


class EarlyStopReplay(EarlyStopping):
    """:class:`EarlyStopping` (val loss, ``restore_best``) that only watches: it records
    ``stopped_epoch`` and the best weights before it, and leaves the run going."""

    def __init__(self, patience: int = EARLY_STOPPING["patience"]) -> None:
        super().__init__("val_loss", "min", patience, 0.0, restore_best=True)

    def on_fit_start(self, trainer: Any) -> None:
        """Nothing: the replay never stops a run."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        """Early stopping's bookkeeping up to the epoch it would stop at, then nothing."""
        if self.stopped_epoch is not None or self.monitor not in metrics:
            return  # stopped already, or no validation split: nothing to watch
        stop = trainer.stop_training
        super().on_epoch_end(trainer, epoch, metrics)
        trainer.stop_training = stop  # watch only

    def on_fit_end(self, trainer: Any, history: list[dict[str, Any]]) -> None:
        """Nothing: the run keeps its own weights."""


def attach_replay(trainer: Any, config: Config) -> EarlyStopReplay | None:
    """Add an :class:`EarlyStopReplay` to ``trainer`` when early stopping is a repair the
    config can take (it has none yet); return it (None otherwise)."""
    if REPAIRS["early_stopping"].patch(config) is None:
        return None
    replay = EarlyStopReplay()
    trainer.callbacks.append(replay)
    return replay


def _replay_of(trainer: Any) -> EarlyStopReplay | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopReplay)), None)


def _evaluate(session: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Validation and test metrics of ``state`` loaded in the session's model (its own
    weights are put back after)."""
    trainer, data = session.built.trainer, session.built.data
    model = trainer.model
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(state)
        val = trainer.evaluate(data.val) if getattr(data, "val", None) is not None else {}
        test = trainer.evaluate(data.test) if getattr(data, "test", None) is not None else {}
    finally:
        model.load_state_dict(own)
    return {"val_accuracy": val.get("accuracy"), "val_loss": val.get("loss"),
            "test_accuracy": test.get("accuracy"), "test_loss": test.get("loss")}


def repair_late_overfitting(result: Any, config: Config, session: Any) -> bool:
    """Keep early stopping for overfitting the full look found, judged on its replay.

    Where the primary finding of ``result`` (after a full look) is overfitting and early
    stopping would have stopped the run, ``result`` gets ``chosen``, ``patch``,
    ``repaired_config``, ``after`` (the best epoch's weights evaluated; ``epochs`` the epoch
    early stopping stops at) and ``status``: :func:`.yardstick.judge` of ``after`` against
    the full look (the run without the repair at the same budget) and the yardstick.

    Returns:
        Whether the repair was kept.
    """
    if not (result.findings and result.full_look) or result.findings[0].kind != "overfitting":
        return False
    replay = _replay_of(session.built.trainer)
    if replay is None or replay.stopped_epoch is None or replay._best_state is None:
        return False
    patch = REPAIRS["early_stopping"].patch(config)
    if patch is None:
        return False
    after = {**_evaluate(session, replay._best_state), "epochs": replay.stopped_epoch,
             "best_epoch": replay.best_epoch,
             "replayed": "early stopping on the full look's own run: no epoch trained again"}
    yard = result.yardstick or None
    status = judge(result.full_look, after, yard)
    if status == "unresolved":
        return False  # the best epoch is no better than the end: nothing to keep
    result.chosen, result.patch = "early_stopping", patch
    result.repaired_config = apply_patch(config, patch)
    result.after, result.status = after, status
    return True
