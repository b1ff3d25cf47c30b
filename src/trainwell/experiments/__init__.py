"""Reproductions of the playbook's claims, each returning a table and writing plots.

Each experiment module exposes ``run(out_dir, ...) -> rows``; those that compare config
variants take a ``build`` callable from the front (:class:`trainwell.cli.experiments.ConfigBuild`),
so this layer never reads a config. ``trainwell experiment NAME`` lives in
:mod:`trainwell.cli.experiments`.
"""

from __future__ import annotations

from . import vanishing

__all__ = ["vanishing"]
