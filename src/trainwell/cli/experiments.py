"""Command-line helpers of the playbook experiments: ``--seeds``, ``--quick``, ``--out``.

Each experiment module ends with ``add_arguments, run_command = cli(NAME, run, seeds)``;
``trainwell experiment NAME`` calls that pair. :mod:`trainwell.experiments.common`
re-exports every name here.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["seed_list", "add_arguments", "run_command", "cli"]


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count ``n`` means seeds ``0 .. n-1``.

    Raises:
        UserError: ``"--seeds: need at least 1 seed, got 0"``.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise UserError(f"--seeds: need at least 1 seed, got {seeds}; use --seeds 3")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise UserError("--seeds: need at least 1 seed; use --seeds 3")
    return out


def add_arguments(
    parser: argparse.ArgumentParser, default_seeds: int, threads: bool = False
) -> None:
    """Add ``--seeds N``, ``--quick``, ``--out DIR`` (and ``--threads N``) to a parser.

    Args:
        parser: the experiment's parser.
        default_seeds: the default of ``--seeds``.
        threads: also add ``--threads`` (torch threads while it runs, default 1).
    """
    parser.add_argument(
        "--seeds",
        type=int,
        default=default_seeds,
        help=f"seeds per variant (default {default_seeds})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for a smoke test (numbers are not meaningful)",
    )
    parser.add_argument("--out", default=None, help="output folder (default runs/experiments/NAME)")
    if threads:
        parser.add_argument(
            "--threads",
            type=int,
            default=1,
            help="torch threads while it runs (1 is fastest for these small models)",
        )


def run_command(
    name: str, run: Callable[..., list[dict[str, Any]]], args: argparse.Namespace
) -> int:
    """Run an experiment from parsed CLI arguments and print its table; returns 0.

    ``run(out, seeds=, quick=)`` also gets ``log`` (progress to stderr) and ``threads``
    (from ``--threads``) when it takes them.

    Raises:
        UserError: ``--seeds`` below 1.
    """
    seeds = seed_list(args.seeds)
    out = Path(args.out) if args.out else Path("runs") / "experiments" / name
    takes = inspect.signature(run).parameters
    options: dict[str, Any] = {}
    if "log" in takes:
        options["log"] = lambda s: print(s, file=sys.stderr)
    if "threads" in takes and hasattr(args, "threads"):
        options["threads"] = args.threads
    run(out, seeds=seeds, quick=args.quick, **options)
    sys.stdout.write((out / "table.md").read_text(encoding="utf-8"))
    print(f"wrote {out}/table.md, results.json and plots")
    return 0


def cli(
    name: str, run: Callable[..., list[dict[str, Any]]], default_seeds: int, threads: bool = False
) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """An experiment module's ``(add_arguments, run_command)`` pair for ``trainwell experiment``.

    Args:
        name: the experiment's name (default output folder ``runs/experiments/<name>``).
        run: its ``run(out_dir, seeds=, quick=, ...)``.
        default_seeds: default of ``--seeds``.
        threads: add ``--threads`` (see :func:`add_arguments`).
    """

    def add_arguments_(parser: argparse.ArgumentParser) -> None:
        add_arguments(parser, default_seeds, threads)

    def run_command_(args: argparse.Namespace) -> int:
        return run_command(name, run, args)

    add_arguments_.__name__ = add_arguments_.__qualname__ = "add_arguments"
    add_arguments_.__doc__ = f"Add ``--seeds``, ``--quick``, ``--out`` to ``experiment {name}``."
    run_command_.__name__ = run_command_.__qualname__ = "run_command"
    run_command_.__doc__ = "Run from parsed CLI arguments, print the table; returns the exit code."
    return add_arguments_, run_command_
