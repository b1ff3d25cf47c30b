"""Reproductions of the playbook's claims, each returning a table and writing plots.

Each experiment module exposes ``run(out_dir, ...) -> rows`` for Python and
``add_arguments(parser)`` / ``run_command(args) -> int`` for ``trainwell experiment NAME``.
"""

from __future__ import annotations

from . import vanishing

__all__ = ["vanishing"]
