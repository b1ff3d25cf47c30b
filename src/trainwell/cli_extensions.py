"""Subcommands of upper layers, registered into the ``trainwell`` parser.

Each entry takes the subparsers object and adds its own subcommand; keeping the list here
lets ``cli.py`` stay small and the doctor, experiments and transfer layers own their code.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["REGISTRARS"]

REGISTRARS: list[Callable] = []
