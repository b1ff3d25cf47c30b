"""``trainwell lr-find CONFIG``: sweep the learning rate exponentially and suggest one.

The suggestion (:data:`~trainwell.train.lr_find.SUGGEST_DIVISOR`: the lowest-loss lr ÷ 10) is
the *base rate* of the configured schedule, and the command says which one and the exact
config line to set: a constant rate (``optim.lr``), the 1cycle peak (``max_lr``), the start
of a decaying schedule (``lr0``). A schedule takes its base rate from ``optim.lr`` unless
``schedule.params`` sets it, so the line names whichever field the run reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..config import Config, load_config
from ..errors import UserError
from ..optim.schedules import Constant, Cosine, Exponential, OneCycle, Piecewise, Power
from ..train.checkpoint import atomic_write_text
from ..train.losses import resolve_loss
from ..train.lr_find import lr_find, plot
from .fields import config_section
from .runner import build_run
from .targets import TorchData

__all__ = ["rate_advice", "run_lr_find"]

# The argument of each schedule that holds its base rate (the plateau controller: a constant).
_BASE_ARG: dict[str, str | None] = {
    cls.name: cls.base_arg for cls in (Constant, Power, Exponential, Piecewise, Cosine, OneCycle)
}
_BASE_ARG["performance"] = "lr"
# What the base rate is, in words, per schedule.
_MEANING = {
    "constant": "the constant learning rate",
    "performance": "the starting rate (the plateau controller lowers it when progress stalls)",
    "one_cycle": "the 1cycle peak (max_lr): the rate warms up to it and anneals far below it",
    "cosine": "the cosine schedule's starting, highest rate (lr0)",
    "power": "the power schedule's starting, highest rate (lr0)",
    "exponential": "the exponential schedule's starting, highest rate (lr0)",
}


def _rate(x: float) -> str:
    """The rate at 2 significant digits, as TOML/--set write it (``0.0029``, ``3e-05``)."""
    return repr(float(f"{x:.2g}"))


def rate_advice(config: Config, rate: float) -> dict[str, Any]:
    """Which rate ``rate`` is for ``config``'s schedule and the config line that sets it.

    Args:
        config: the run's config.
        rate: the suggested base rate.

    Returns:
        ``{"schedule", "meaning", "field", "value", "line", "set"}``: ``field`` the dotted
        config field (``optim.lr``, or ``schedule.params.max_lr`` where the config sets the
        schedule's own base rate), ``line`` the TOML line (``optim.lr = 0.0029``) and ``set``
        the command-line form (``--set optim.lr=0.0029``). A piecewise schedule lists its
        rates itself: ``field`` is None and ``meaning`` says to scale them.
    """
    name = config.schedule.name
    arg = _BASE_ARG.get(name)
    value = _rate(rate)
    if arg is None:  # piecewise: explicit values, no base rate
        return {"schedule": name, "field": None, "value": float(value), "line": None, "set": None,
                "meaning": f"the first (highest) of schedule.params.values: scale the values so "
                           f"that it is {value}"}
    params = config.schedule.params or {}
    field = f"schedule.params.{arg}" if params.get(arg) is not None else "optim.lr"
    return {"schedule": name, "meaning": _MEANING.get(name, f"the schedule's base rate ({arg})"),
            "field": field, "value": float(value), "line": f"{field} = {value}",
            "set": f"--set {field}={value}"}


def run_lr_find(args: argparse.Namespace) -> int:
    """Run the sweep of ``args.config``; write ``lr_find.png`` and ``lr_find.json``; print the
    suggested rate for the configured schedule and the config line to use."""
    config = load_config(args.config, args.overrides)
    run = build_run(config, progress=False)
    if isinstance(run.data, TorchData):
        raise UserError("data.target: lr-find needs in-memory data (a trainwell Dataset); "
                        "use the Trainer's own loop with your loaders instead")
    with config_section("train"):
        _, loss_fn = resolve_loss(config.train.loss, run.data.task)
    gen = torch.Generator().manual_seed(config.seed)
    result = lr_find(run.model, run.optimizer, run.data.train.to(run.trainer.device), loss_fn,
                     steps=args.steps, batch_size=config.train.batch_size, generator=gen)
    advice = rate_advice(config, result.suggestion)
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-lr-find"
    out.mkdir(parents=True, exist_ok=True)
    label = "suggested 1cycle peak" if config.schedule.name == "one_cycle" else "suggested lr"
    png = plot(result, out / "lr_find.png", label=label)
    atomic_write_text(out / "lr_find.json", json.dumps(
        {"suggestion": result.suggestion, "min_loss_lr": result.min_loss_lr,
         "steepest": result.steepest, "advice": advice,
         "lrs": list(result.lrs), "losses": list(result.losses)}))
    print(f"swept {len(result.lrs)} learning rates from {result.lrs[0]:.1e} to "
          f"{result.lrs[-1]:.1e}")
    if result.min_loss_lr is not None:
        steep = f"; steepest descent at {result.steepest:.2g}" if result.steepest else ""
        print(f"lowest smoothed loss at lr {result.min_loss_lr:.2g}{steep}")
    print(f"schedule {advice['schedule']}: the suggestion {advice['value']:g} (lowest-loss lr ÷ 10)"
          f" is {advice['meaning']}")
    if advice["line"] is not None:
        where = ("" if advice["field"] != "optim.lr" or advice["schedule"] in ("constant",)
                 else f" (the schedule takes its {_BASE_ARG[advice['schedule']]} from optim.lr)")
        print(f"set in the config: {advice['line']}{where}   or: {advice['set']}")
    print(f"plot: {png}")
    return 0
