"""The one error type for bad input.

A :class:`UserError` carries a single line that names what is wrong (a config field, a
file, an argument) and how to fix it. The CLI prints it as ``error: <message>`` and exits
with code 2, without a traceback. It subclasses :class:`ValueError` so Python callers can
catch it as the usual "bad argument" error.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user: one line saying what is wrong and what to do.

    Example:
        >>> raise UserError("optim.lr: must be > 0, got -1; set a positive learning rate")
    """

    def __init__(self, message: str) -> None:
        # One line only: the CLI prints it verbatim, and a multi-line message would read
        # as a traceback to the user.
        super().__init__(" ".join(str(message).split()))
