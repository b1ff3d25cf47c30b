"""``trainwell pretrain CONFIG``: pretrain a config's MLP as an autoencoder, save it as a run.

``trainwell pretrain CONFIG [--set k=v ...] [--out DIR] [--method layerwise|stacked|both]
[--epochs N] [--stacked-epochs N] [--lr LR] [--noise none|gaussian|mask] [--noise-level X]
[--tied]`` builds the data and the model of ``CONFIG`` exactly as ``trainwell train`` does,
pretrains the model's hidden blocks on the training inputs (labels unused), and writes a
run folder that ``transfer.from`` can name::

    DIR/config.toml              the resolved config (its [model] describes the encoder)
    DIR/checkpoints/epoch-0001.* the pretrained model (safetensors + JSON, as any run)
    DIR/metrics.jsonl            reconstruction loss per stage and epoch
    DIR/summary.json             settings, final losses, wall time

Settings come from the config's ``[pretrain]`` section when it has one, and each command
line flag overrides its field. Exit code 0, or 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..config import load_config, to_toml
from ..errors import UserError
from ..train.checkpoint import atomic_write_text, save_checkpoint
from ..transfer.pretrain import pretrain_layerwise, pretrain_stacked
from .args import add_config_args
from .fields import config_section
from .rundir import choose_run_dir, claim_run_dir
from .runner import build_data, build_model
from .targets import TorchData

__all__ = [
    "PRETRAIN_DEFAULTS",
    "add_pretrain_arguments",
    "run_pretrain",
    "register",
    "pretrain_settings",
]

# The [pretrain] config section's fields and defaults (mirrored by the config schema).
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "method": "layerwise",  # layerwise | stacked | both (layer-wise, then the whole stack)
    "epochs": 5,  # layer-wise: epochs per hidden block
    "stacked_epochs": 10,  # stacked: epochs of the whole autoencoder
    "lr": 1e-3,  # Adam learning rate
    "batch_size": 128,  # samples per step
    "noise": "none",  # none | gaussian | mask (denoising autoencoders)
    "noise_level": 0.1,  # Gaussian std, or masking probability
    "tied": False,  # decoder weights = encoder weights transposed
    "optimizer": "adam",  # a name from trainwell.optim.OPTIMIZERS
}


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trainwell pretrain`` arguments to ``parser``."""
    add_config_args(parser, "TOML config whose data and model to pretrain (default: built-in)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: runs/NAME-pretrain)")
    parser.add_argument(
        "--method",
        choices=["layerwise", "stacked", "both"],
        help="greedy layer-wise, stacked, or layer-wise then stacked",
    )
    parser.add_argument("--epochs", type=int, help="layer-wise epochs per hidden layer")
    parser.add_argument("--stacked-epochs", type=int, help="epochs of the stacked autoencoder")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--batch-size", type=int, help="samples per step")
    parser.add_argument("--noise", choices=["none", "gaussian", "mask"], help="denoising noise")
    parser.add_argument("--noise-level", type=float, help="Gaussian std or masking probability")
    parser.add_argument(
        "--tied",
        action="store_true",
        default=None,
        help="tie decoder weights to the encoder's (transposed)",
    )


def pretrain_settings(config: Any, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The pretraining settings: defaults, then ``config.pretrain``, then command-line flags.

    Args:
        config: a run config, with or without a ``pretrain`` section.
        args: parsed ``trainwell pretrain`` arguments (flags left unset are ``None``).

    Returns:
        A dict with every key of :data:`PRETRAIN_DEFAULTS`.

    Raises:
        UserError: a method, epoch count or learning rate out of range.
    """
    settings = dict(PRETRAIN_DEFAULTS)
    section = getattr(config, "pretrain", None)
    if section is not None:
        for key in settings:
            if getattr(section, key, None) is not None:
                settings[key] = getattr(section, key)
    if args is not None:
        for key in settings:
            value = getattr(args, key, None)
            if value is not None:
                settings[key] = value
    if settings["method"] not in ("layerwise", "stacked", "both"):
        raise UserError(
            f"pretrain.method: unknown {settings['method']!r}; choose layerwise, stacked or both"
        )
    for key in ("epochs", "stacked_epochs", "batch_size"):
        if int(settings[key]) < 1:
            raise UserError(f"pretrain.{key}: must be >= 1, got {settings[key]}")
    if not float(settings["lr"]) > 0:
        raise UserError(f"pretrain.lr: must be > 0, got {settings['lr']}")
    return settings


def run_pretrain(args: argparse.Namespace) -> int:
    """Run ``trainwell pretrain`` from parsed arguments; return the exit code (0).

    Raises:
        UserError: bad config, settings, or a model without MLP hidden blocks.
    """

    started = time.perf_counter()
    config = load_config(args.config, args.overrides)
    if config.model.kind != "mlp":
        raise UserError(f"model.kind: pretraining needs an mlp, got {config.model.kind!r}")
    s = pretrain_settings(config, args)
    data = build_data(config)
    model = build_model(config, data)
    out, note = choose_run_dir(Path(args.out) if args.out else Path("runs") / f"{config.name}-pretrain",
                               default=args.out is None)
    if note:
        print(note)
    if isinstance(data, TorchData):
        raise UserError("data.target: pretraining needs in-memory data (a trainwell Dataset)")
    claim_run_dir(out)
    common = dict(
        lr=float(s["lr"]),
        batch_size=int(s["batch_size"]),
        noise=None if s["noise"] == "none" else s["noise"],
        noise_level=float(s["noise_level"]),
        tied=bool(s["tied"]),
        optimizer=s["optimizer"],
        seed=config.seed,
    )
    stages: list[tuple[str, list[float]]] = []
    with config_section("pretrain"):
        if s["method"] in ("layerwise", "both"):
            result = pretrain_layerwise(model, data.train.x, epochs=int(s["epochs"]), **common)
            model = result.model
            stages += [(f"layer {i}", curve) for i, curve in enumerate(result.losses)]
        if s["method"] in ("stacked", "both"):
            result = pretrain_stacked(model, data.train.x, epochs=int(s["stacked_epochs"]), **common)
            model = result.model
            stages.append(("stacked", result.losses[0]))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", to_toml(config))
    lines = [
        json.dumps({"stage": name, "epoch": e + 1, "recon_loss": loss})
        for name, curve in stages
        for e, loss in enumerate(curve)
    ]
    atomic_write_text(out / "metrics.jsonl", "".join(line + "\n" for line in lines))
    # The checkpoint format stores an optimizer too; an empty one keeps it a plain run folder.
    save_checkpoint(
        out,
        1,
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        {"pretrain": s, "seed": config.seed},
    )
    summary = {
        "name": config.name,
        "seed": config.seed,
        "pretrain": s,
        "final_recon_loss": {name: curve[-1] for name, curve in stages},
        "unlabelled_samples": len(data.train),
        "wall_time_s": time.perf_counter() - started,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    for name, curve in stages:
        print(f"{name:>10}: reconstruction loss {curve[0]:.4f} → {curve[-1]:.4f}")
    print(f'pretrained encoder: {out}  (reuse it with --set transfer.from="{out}")')
    return 0


def register(subparsers: Any) -> None:
    """Add the ``pretrain`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("pretrain", help="pretrain a config's MLP as an autoencoder")
    add_pretrain_arguments(p)
    p.set_defaults(func=run_pretrain)
