"""The Trainer's resumable state: what a checkpoint holds beside the weights, and restoring it.

A checkpoint's JSON keeps the counters (epochs, optimizer steps, skipped steps), the seed,
the history, the loss scaler's, plateau controller's and callbacks' states; together with the
model and optimizer tensors and the per-epoch seeds (:func:`~trainwell.data.loaders.epoch_seed`)
that is everything a resumed run needs to continue exactly as an uninterrupted one.

A mid-epoch checkpoint adds ``position``: the batch of the epoch to continue at, the world
size that took it and each rank's epoch log so far; its tensor file adds each rank's RNG
states (``rng/<generator>/<rank>``), which no per-epoch seed can recreate mid-epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .checkpoint import apply_model_state, apply_optimizer_state, latest_checkpoint, load_checkpoint

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .trainer import Trainer

__all__ = ["restore_state", "trainer_state"]


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """The JSON-serializable state of ``trainer`` that a checkpoint saves."""
    return {
        "epoch": trainer.epoch,
        "step": trainer.step,
        "skipped_steps": trainer.skipped_steps,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "seed": trainer.seed,
        "history": trainer.history,
        "plateau": trainer.plateau.state_dict() if trainer.plateau is not None else None,
        "callbacks": [cb.state_dict() for cb in trainer.callbacks],
    }


def restore_state(trainer: Trainer, run_dir: Path) -> bool:
    """Load the newest checkpoint of ``run_dir`` into ``trainer``; False when there is none.

    Model, optimizer, scaler, plateau and callback states, the counters and the history.

    Raises:
        UserError: a corrupt checkpoint, or one from another model or seed.
    """
    path = latest_checkpoint(run_dir)
    if path is None:
        return False  # killed before the first checkpoint: start from the beginning
    tensors, meta = load_checkpoint(path)
    apply_model_state(trainer.model, tensors, str(path))
    apply_optimizer_state(trainer.optimizer, tensors, meta, str(path))
    state = meta["trainer"]
    if state.get("seed") != trainer.seed:
        raise UserError(f"checkpoint {path}: made with seed {state.get('seed')} but this run "
                        f"has seed {trainer.seed}; resume with the run's own config")
    trainer.epoch, trainer.step = int(state["epoch"]), int(state["step"])
    trainer.skipped_steps = int(state["skipped_steps"])
    trainer.history = list(state["history"])
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    if trainer.plateau is not None and state.get("plateau") is not None:
        trainer.plateau.load_state_dict(state["plateau"])
    for cb, cb_state in zip(trainer.callbacks, state.get("callbacks", [])):
        cb.load_state_dict(cb_state)
    trainer._resume_at = None
    if state.get("position") is not None:
        trainer._resume_at = _position(state["position"], tensors, trainer, path)
    return True


def _position(position: dict[str, Any], tensors: dict[str, Any], trainer: Trainer,
              path: Path) -> dict[str, Any]:
    """This rank's part of a mid-epoch checkpoint: batch, epoch log and RNG states."""
    world, rank = trainer.dist.world_size, trainer.dist.rank
    if position["world_size"] != world:
        raise UserError(f"checkpoint {path}: taken mid-epoch by {position['world_size']} "
                        f"process(es), resumed by {world}; resume with the same number "
                        "(torchrun --nproc_per_node), or from an epoch's checkpoint")
    logs = position.get("logs")
    if not isinstance(logs, list) or len(logs) != world:
        raise UserError(f"checkpoint {path}: field 'trainer.position.logs' does not hold one "
                        "log per process; delete it to resume from the previous one")
    prefix = "rng/"
    rng = {key[len(prefix):].rsplit("/", 1)[0]: value for key, value in tensors.items()
           if key.startswith(prefix) and key.endswith(f"/{rank}")}
    if "cpu" not in rng:
        raise UserError(f"checkpoint {path}: its tensor file lacks rng/cpu/{rank}; delete it "
                        "to resume from the previous one")
    return {"batch": int(position["batch"]), "log": logs[rank], "rng": rng}
