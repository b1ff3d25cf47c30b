"""The playbook's core demonstration: vanishing/exploding gradients across 50 layers.

For each (activation, initializer) pair — sigmoid + N(0,1), sigmoid + Glorot, tanh +
Glorot, ReLU + He, ELU + He, SELU + LeCun — and each seed, a deep MLP is built; the
per-layer gradient norms ‖∂J/∂W_ℓ‖ of the first batch are recorded (float64, before any
step), then it trains a fixed budget with the doctor watching. The table gives the test
accuracy (mean ± std over seeds), the first/last gradient-norm ratio and the doctor's
findings; ``grad_norms.png`` plots the norms across depth on a log scale.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from .. import data as tw_data
from .. import nn as tw_nn
from .. import optim as tw_optim
from ..doctor import DoctorCallback, describe_layers
from ..errors import UserError
from ..train import Trainer
from ..train.checkpoint import atomic_write_text

__all__ = ["SETUPS", "first_step_grad_norms", "run"]

SETUPS: tuple[tuple[str, str], ...] = (
    ("sigmoid", "normal"),
    ("sigmoid", "glorot_normal"),
    ("tanh", "glorot_normal"),
    ("relu", "he_normal"),
    ("elu", "he_normal"),
    ("selu", "lecun_normal"),
)
"""(activation, initializer) pairs, in the playbook's order."""


def first_step_grad_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per-layer weight-gradient L2 norms of one cross-entropy backward pass, in float64.

    Returns:
        ‖∂J/∂W_ℓ‖₂ for each Linear layer ℓ, input side first (no optimizer step taken).
    """

    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    norms = []
    for info in describe_layers(model):
        grad = info.weight.grad
        assert grad is not None, f"{info.name}'s weight gets no gradient"
        norms.append(float(torch.linalg.vector_norm(grad.double())))
    model.zero_grad(set_to_none=True)
    return norms


def run(
    out_dir: str | Path | None,
    seeds: int = 3,
    *,
    depth: int = 50,
    width: int = 64,
    epochs: int = 20,
    batch_size: int = 64,
    source: str = "digits",
    optimizer: str = "adam",
    lr: float = 1e-3,
    setups: tuple[tuple[str, str], ...] = SETUPS,
) -> list[dict[str, Any]]:
    """Run the experiment; write ``table.md``, ``results.json`` and ``grad_norms.png``.

    Args:
        out_dir: output folder (None: return the table only).
        seeds: seeds 0..seeds−1 per setup.
        depth, width: hidden layers and units of the MLP.
        epochs, batch_size, source, optimizer, lr: the fixed training budget.
        setups: (activation, initializer) pairs.

    Returns:
        One row per setup: ``activation``, ``init``, ``test_accuracy`` (mean), ``std``,
        ``grad_ratio`` (median first/last at step 0), ``findings`` (kinds over seeds),
        ``grad_norms`` (mean per layer over seeds).

    Raises:
        UserError: seeds < 1, or bad names (from the builders).
    """

    if seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {seeds}")
    rows = []
    for act, init in setups:
        accs, ratios, kinds, norms = [], [], set(), []
        for seed in range(seeds):
            data = tw_data.load(source, seed=seed)
            gen = torch.Generator().manual_seed(seed)
            model = tw_nn.MLP(
                data.in_features,
                [width] * depth,
                data.out_features,
                activation=act,
                init=init,
                generator=gen,
            )
            g = first_step_grad_norms(model, data.train.x[:batch_size], data.train.y[:batch_size])
            norms.append(g)
            ratios.append(g[0] / g[-1] if g[-1] > 0 else math.inf)
            cb = DoctorCallback(every=5, num_classes=data.num_classes)
            trainer = Trainer(
                model,
                tw_optim.build(optimizer, model.parameters(), lr=lr),
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                callbacks=[cb],
                device="cpu",
                progress=False,
            )
            trainer.fit(data)
            accs.append(trainer.evaluate(data.test)["accuracy"])
            kinds |= {f.kind for f in cb.findings()}
        rows.append(
            {
                "activation": act,
                "init": init,
                "test_accuracy": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "grad_ratio": statistics.median(ratios),
                "findings": sorted(kinds),
                "grad_norms": [statistics.fmean(col) for col in zip(*norms)],
            }
        )
    if out_dir is not None:
        _write(Path(out_dir), rows, seeds, depth, width, epochs, optimizer, lr, source)
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| activation + init | test accuracy | first/last grad norm (step 0) | doctor's findings |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['activation']} + {r['init']} | {r['test_accuracy']:.3f} ± {r['std']:.3f} "
            f"| {r['grad_ratio']:.2e} | {', '.join(r['findings']) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def _write(
    out: Path,
    rows: list[dict[str, Any]],
    seeds: int,
    depth: int,
    width: int,
    epochs: int,
    optimizer: str,
    lr: float,
    source: str,
) -> None:
    # Imported here: pyplot is slow to import and only the written report needs it.
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    head = (
        f"{depth}×{width} MLP on {source}, {optimizer} lr={lr}, {epochs} epochs, {seeds} seeds\n\n"
    )
    atomic_write_text(out / "table.md", head + table_markdown(rows))
    atomic_write_text(out / "results.json", json.dumps(rows, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        vals = [max(v, 1e-300) for v in r["grad_norms"]]
        ax.plot(range(1, len(vals) + 1), vals, label=f"{r['activation']} + {r['init']}")
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("‖∂J/∂W‖ after the first batch")
    ax.legend(fontsize=7)
    fig.savefig(out / "grad_norms.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
