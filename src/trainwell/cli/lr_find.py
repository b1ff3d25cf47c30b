"""``trainwell lr-find CONFIG``: sweep the learning rate exponentially and suggest one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..config import load_config
from ..errors import UserError
from ..train.checkpoint import atomic_write_text
from ..train.losses import resolve_loss
from ..train.lr_find import lr_find, plot
from .fields import config_section
from .runner import build_run
from .targets import TorchData

__all__ = ["run_lr_find"]


def run_lr_find(args: argparse.Namespace) -> int:
    """Run the sweep of ``args.config``; write ``lr_find.png`` and ``lr_find.json``."""
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
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-lr-find"
    out.mkdir(parents=True, exist_ok=True)
    png = plot(result, out / "lr_find.png")
    atomic_write_text(out / "lr_find.json", json.dumps(
        {"suggestion": result.suggestion, "lrs": list(result.lrs), "losses": list(result.losses)}))
    print(f"swept {len(result.lrs)} learning rates from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}")
    print(f"suggested learning rate: {result.suggestion:.2e}  (set optim.lr={result.suggestion:.2e})")
    print(f"plot: {png}")
    return 0
