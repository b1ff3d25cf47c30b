"""Subcommands of upper layers, registered into the ``trainwell`` parser.

Each registrar takes the subparsers object and adds its own subcommand(s); keeping the list
here lets ``cli.py`` stay small while the doctor, experiments and transfer layers own their
code. Experiments are one module each under :mod:`trainwell.experiments`, exposing
``add_arguments(parser)`` and ``run_command(args) -> int``; adding one is one line in
:data:`EXPERIMENTS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["EXPERIMENTS", "REGISTRARS"]

EXPERIMENTS: dict[str, tuple[str, str]] = {
    "optimizers": ("trainwell.experiments.optimizers", "every optimizer on one MNIST-1D MLP"),
    "schedules": ("trainwell.experiments.schedules", "LR schedules at the same epoch budget"),
    "regularization": ("trainwell.experiments.regularization", "none vs L2 vs dropout vs max-norm"),
    "activations": ("trainwell.experiments.activations", "ReLU family in a deep MLP, dead units"),
    "vanishing": ("trainwell.experiments.vanishing", "50-layer nets: gradients across depth"),
    "transfer": ("trainwell.experiments.transfer", "reuse MNIST-1D 0–7 layers for 8 vs 9"),
    "pretraining": ("trainwell.experiments.pretraining", "autoencoder pretraining, few labels"),
}


def _register_experiments(subparsers) -> None:
    p = subparsers.add_parser("experiment", help="reproduce a playbook claim: table + plots")
    esub = p.add_subparsers(dest="experiment", metavar="NAME", parser_class=type(p))
    for name, (module_name, help_text) in EXPERIMENTS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # an experiment not built yet is simply not offered
        ep = esub.add_parser(name, help=help_text)
        module.add_arguments(ep)
        ep.set_defaults(func=module.run_command)


def _register_module(module_name: str) -> Callable:
    def register(subparsers) -> None:
        importlib.import_module(module_name).register(subparsers)

    return register


REGISTRARS: list[Callable] = [
    _register_module("trainwell.cli.doctor"),
    _register_module("trainwell.cli.transfer"),
    _register_experiments,
]
