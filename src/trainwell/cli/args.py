"""Arguments shared by the commands that read a config: ``CONFIG`` and ``--set KEY=VALUE``."""

from __future__ import annotations

import argparse

__all__ = ["add_config_args"]

_DEFAULT_HELP = "TOML config file (default: the built-in MNIST-1D run)"


def add_config_args(parser: argparse.ArgumentParser, config_help: str = _DEFAULT_HELP) -> None:
    """Add the optional ``CONFIG`` path and the repeatable ``--set KEY=VALUE`` to ``parser``.

    Args:
        parser: the command's parser; parsed values land in ``config`` and ``overrides``.
        config_help: the help line of ``CONFIG`` (what the command does with it).
    """
    parser.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")
