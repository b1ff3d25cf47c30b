"""The one place where argument names of the lower layers become config paths.

Below the front, functions raise ``ValueError``/``TypeError`` (often the ``UserError``
subclass) whose message starts with their own argument's name: ``MLP(dropout=1.5)`` says
``"dropout: must be in [0, 1), got 1.5"``. When the front builds an object from a config
section, it runs the call inside :func:`config_section`, which rewrites that leading name to
the config path the user wrote (``"model.dropout: ..."``) by :data:`CONFIG_PATHS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import UserError

__all__ = ["CONFIG_PATHS", "config_path", "config_section"]

# (config section, argument name in the message) -> the config path to show instead.
CONFIG_PATHS: dict[tuple[str, str], str] = {
    # trainwell.nn builders, activations and initializers
    **{("model", a): f"model.{a}" for a in (
        "activation", "channels", "dropout", "hidden", "in_features", "in_shape", "init",
        "kernel_size", "out_features", "pool")},
    ("model", "tensor"): "model.init",  # fans(tensor): a layer the initializer cannot size
    ("model", "mode"): "model.init",  # the He mode of an initializer
    # trainwell.optim.build and the optimizer classes
    **{("optim", a): f"optim.{a}" for a in (
        "name", "lr", "momentum", "beta", "betas", "eps", "weight_decay", "convention")},
    ("optim.clip", "kind"): "optim.clip.kind",
    ("optim.clip", "threshold"): "optim.clip.threshold",
    ("regularization", "l1"): "regularization.l1",
    ("regularization", "l2"): "regularization.l2",
    ("regularization", "max_value"): "regularization.max_norm",
    # trainwell.data.load and its sources (options keep their short names: data.kind, ...)
    **{("data", a): f"data.{a}" for a in (
        "classes", "kind", "noise", "num_samples", "source", "task", "test_fraction",
        "val_fraction")},
    # trainwell.train.Trainer and its loss
    ("train", "epochs"): "train.epochs",
    ("train", "batch_size"): "train.batch_size",
    ("train", "loss"): "train.loss",
    ("train", "accumulate"): "train.accumulate",
    ("train", "checkpoint_every_steps"): "train.checkpoint_every_steps",
    ("train", "sync_batch_norm"): "train.sync_batch_norm",
    ("train", "schedule_unit"): "schedule.unit",
    # trainwell.transfer
    ("transfer", "source"): "transfer.from",
    ("transfer", "n_layers"): "transfer.n_layers",
    ("pretrain", "noise"): "pretrain.noise",
    ("pretrain", "noise_level"): "pretrain.noise_level",
}


def config_path(section: str, message: str) -> str | None:
    """``message`` with its leading argument name replaced by its config path, or None.

    Args:
        section: the config section the failing call was built from (``"model"``, ...).
        message: the error message, ``"<argument>: <what is wrong>"``.

    Returns:
        ``"<config path>: <what is wrong>"`` when ``(section, argument)`` is in
        :data:`CONFIG_PATHS`, else None.
    """
    name, sep, rest = message.partition(": ")
    base, bracket, index = name.partition("[")  # "betas[0]" → optim.betas[0]
    path = CONFIG_PATHS.get((section, base)) if sep else None
    return None if path is None else f"{path}{bracket}{index}: {rest}"


@contextmanager
def config_section(section: str) -> Iterator[None]:
    """Run a block that builds objects from config ``section``; name config paths in errors.

    A ``ValueError``/``TypeError`` whose message starts with a mapped argument name is
    raised again as a one-line :class:`~trainwell.errors.UserError` naming the config path;
    any other error passes through unchanged.
    """
    try:
        yield
    except (ValueError, TypeError) as e:
        renamed = config_path(section, str(e))
        if renamed is None:
            raise
        raise UserError(renamed) from None
