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
    ("transfer", "source"): "transfer.from",
    ("transfer", "n_layers"): "transfer.n_layers",
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
    path = CONFIG_PATHS.get((section, name)) if sep else None
    return None if path is None else f"{path}: {rest}"


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
