"""Subcommands beyond train / config / lr-find, registered into the ``trainwell`` parser.

Each registrar takes the subparsers object and adds its own subcommand(s); keeping the list
here lets :mod:`trainwell.cli.app` stay small. Experiments are rows of
:data:`trainwell.cli.experiments.EXPERIMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import doctor, experiments, transfer

__all__ = ["REGISTRARS"]

REGISTRARS: list[Callable[[Any], None]] = [
    doctor.register,
    transfer.register,
    experiments.register,
]
