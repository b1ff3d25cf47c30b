"""``trainwell experiment NAME``: the playbook experiments on the command line.

Each experiment is one row of :data:`EXPERIMENTS` (its ``run`` function, help line, default
``--seeds`` and whether it takes ``--threads``); adding one is one row. The experiments that
compare config variants get :class:`ConfigBuild`, which turns their patches into runs
through the runner, so the experiments layer itself never reads a config.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, apply_patch, load_config
from ..data.dataset import Dataset
from ..errors import UserError
from ..experiments import (
    activations,
    optimizers,
    pretraining,
    regularization,
    schedules,
    transfer,
    vanishing,
)
from ..experiments.common import seed_list
from .runner import Run, build_data, build_run
from .targets import TorchData

__all__ = ["EXPERIMENTS", "ConfigBuild", "Experiment", "add_arguments", "add_vanishing_arguments",
           "register", "run_command", "run_vanishing"]


class ConfigBuild:
    """The experiments' ``build(base, patch)`` over configs: the built-in default config,
    then ``base``, then ``patch`` (dotted keys), built by :func:`~trainwell.cli.runner.build_run`.

    The data of a (data section, seed) pair are loaded once per instance and shared by
    every variant, so variants differ only in what their patch changes.
    """

    def __init__(self) -> None:
        self._data: dict[str, Dataset] = {}

    def config(self, base: Mapping[str, Any], patch: Mapping[str, Any]) -> Config:
        """The validated config of ``(base, patch)``."""
        return apply_patch(apply_patch(load_config(None), base), patch)

    def __call__(self, base: Mapping[str, Any], patch: Mapping[str, Any]) -> Run:
        config = self.config(base, patch)
        key = json.dumps([config.data.model_dump(mode="json"), config.seed], sort_keys=True)
        if key not in self._data:
            data = build_data(config)
            if isinstance(data, TorchData):
                raise UserError("data.target: the experiments need in-memory data")
            self._data[key] = data
        return build_run(config, data=self._data[key], progress=False)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Experiment:
    """One ``trainwell experiment`` subcommand.

    Attributes:
        call: runs it from ``(out, seeds, quick, threads)`` and returns its rows.
        help: the one-line help.
        default_seeds: the default of ``--seeds``.
        threads: whether it offers ``--threads`` (torch threads while it runs).
    """

    call: Callable[[Path, list[int], bool, int | None], list[dict[str, Any]]]
    help: str
    default_seeds: int
    threads: bool = False


def _from_configs(module: Any, help: str) -> Experiment:
    """An experiment whose variants are config patches, built by :class:`ConfigBuild`."""
    return Experiment(
        lambda out, seeds, quick, _: module.run(
            out, seeds=seeds, quick=quick, log=_log, build=ConfigBuild()),
        help, module.DEFAULT_SEEDS)


EXPERIMENTS: dict[str, Experiment] = {
    "optimizers": _from_configs(optimizers, "every optimizer on one MNIST-1D MLP"),
    "schedules": _from_configs(schedules, "LR schedules at the same epoch budget"),
    "regularization": _from_configs(regularization, "none vs L2 vs dropout vs max-norm"),
    "activations": _from_configs(activations, "ReLU family in a deep MLP, dead units"),
    "transfer": Experiment(
        lambda out, seeds, quick, threads: transfer.run(
            out, seeds=seeds, quick=quick, threads=threads),
        "reuse MNIST-1D 0–7 layers for 8 vs 9", 10, threads=True),
    "pretraining": Experiment(
        lambda out, seeds, quick, threads: pretraining.run(
            out, seeds=seeds, quick=quick, threads=threads),
        "autoencoder pretraining, few labels", 5, threads=True),
}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--seeds N``, ``--quick``, ``--out DIR`` (and ``--threads N``) for experiment ``name``."""
    spec = EXPERIMENTS[name]
    parser.add_argument("--seeds", type=int, default=spec.default_seeds,
                        help=f"seeds per variant (default {spec.default_seeds})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budget for a smoke test (numbers are not meaningful)")
    parser.add_argument("--out", default=None, help="output folder (default runs/experiments/NAME)")
    if spec.threads:
        parser.add_argument("--threads", type=int, default=1,
                            help="torch threads while it runs (1 is fastest for these small models)")


def run_command(name: str, args: argparse.Namespace) -> int:
    """Run experiment ``name`` from parsed arguments and print its table; returns 0.

    Raises:
        UserError: ``--seeds`` below 1.
    """
    spec = EXPERIMENTS[name]
    seeds = seed_list(args.seeds)
    out = Path(args.out) if args.out else Path("runs") / "experiments" / name
    spec.call(out, seeds, args.quick, args.threads if spec.threads else None)
    sys.stdout.write((out / "table.md").read_text(encoding="utf-8"))
    print(f"wrote {out}/table.md, results.json and plots")
    return 0


def add_vanishing_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trainwell experiment vanishing`` arguments."""
    parser.add_argument("--out", default="runs/experiment-vanishing", help="output folder")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--source", default="digits")


def run_vanishing(args: argparse.Namespace) -> int:
    """Run from parsed arguments, print the table; return 0."""
    rows = vanishing.run(
        args.out,
        seeds=args.seeds,
        depth=args.depth,
        width=args.width,
        epochs=args.epochs,
        source=args.source,
    )
    print(vanishing.table_markdown(rows), end="")
    print(f"written: {Path(args.out) / 'table.md'}, grad_norms.png, results.json")
    return 0


def register(subparsers: Any) -> None:
    """Add ``trainwell experiment NAME`` with one subcommand per experiment."""
    p = subparsers.add_parser("experiment", help="reproduce a playbook claim: table + plots")
    esub = p.add_subparsers(dest="experiment", metavar="NAME", parser_class=type(p))
    order = ["optimizers", "schedules", "regularization", "activations", "vanishing",
             "transfer", "pretraining"]  # the order `trainwell experiment --help` lists
    for name in order:
        if name == "vanishing":  # its own flags (depth, width, source, ...)
            ep = esub.add_parser(name, help="50-layer nets: gradients across depth")
            add_vanishing_arguments(ep)
            ep.set_defaults(func=run_vanishing)
            continue
        ep = esub.add_parser(name, help=EXPERIMENTS[name].help)
        add_arguments(ep, name)
        ep.set_defaults(func=lambda args, name=name: run_command(name, args))
