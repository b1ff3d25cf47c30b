"""The front: every ``trainwell`` command, the runner (config → objects) and the repair loop.

This package is the top floor of trainwell. It alone (with :mod:`trainwell.config`) reads a
config: it builds models, optimizers, data and Trainers from it with plain calls and hands
those objects to the layers below (``doctor``, ``transfer``, ``experiments``), which never see
a config. Modules:

- :mod:`~trainwell.cli.app`: the parser, ``main`` and the train / config / lr-find commands;
- :mod:`~trainwell.cli.runner`: config → data, model, optimizer, Trainer; the run folder;
- :mod:`~trainwell.cli.repair_loop`: the doctor's diagnose/repair loop over a config;
- :mod:`~trainwell.cli.doctor`, :mod:`~trainwell.cli.transfer`,
  :mod:`~trainwell.cli.experiments`: the ``doctor``/``report``, ``pretrain`` and
  ``experiment`` commands (registered by :mod:`~trainwell.cli.extensions`);
- :mod:`~trainwell.cli.fields`: the one table from lower layers' argument names to config
  paths, for error messages; :mod:`~trainwell.cli.args`: ``CONFIG`` and ``--set``.
"""

from __future__ import annotations

from .app import build_parser, main

__all__ = ["build_parser", "main"]
