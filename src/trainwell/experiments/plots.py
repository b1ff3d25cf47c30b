"""Plots of the playbook experiments: per-epoch curves over seeds, PNG output (Agg backend).

matplotlib is imported on first use, so importing an experiment (or ``trainwell
experiment --help``) does not pay for it. Everything here is re-exported by
:mod:`trainwell.experiments.common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_curves", "pyplot", "save_figure"]


def plot_curves(
    path: Path,
    rows: Sequence[dict[str, Any]],
    panels: Sequence[tuple[str, str, bool]],
    title: str,
) -> Path:
    """Plot per-epoch curves, mean over seeds with a ±1 std band, one panel per key.

    Args:
        path: the PNG to write.
        rows: rows of :func:`~trainwell.experiments.common.run_variants` (their ``curves``).
        panels: ``(curve key, y label, log scale)`` per panel.
        title: figure title.

    Returns:
        ``path``.
    """
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, label, logy) in zip(axes[0], panels):
        for row in rows:
            curves = np.asarray(row["curves"][key], dtype=float)  # (seeds, epochs)
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            epochs = np.arange(1, curves.shape[1] + 1)
            (line,) = ax.plot(epochs, mean, label=row["name"], lw=1.6)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    # Imported on first use: pyplot is slow to import and only plotting needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (PNG, 110 dpi, folders created), close it.

    Returns:
        ``path``.
    """
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
