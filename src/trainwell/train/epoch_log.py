"""The per-step values of one epoch, kept on the device and reduced once at its end.

A few small tensor ops per step are measurable next to a small MLP's step on a CPU, and any
``.item()`` waits for a GPU: so the loop only appends references here (losses, predicted
class indices — 8 bytes a sample, not logits — and gradient norms when clipping or asked),
and :meth:`EpochLog.reduce` turns them into numbers once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["EpochLog"]


@dataclass
class EpochLog:
    """What one epoch's steps leave behind; ``reduce`` gives the epoch's train metrics."""

    losses: list[torch.Tensor] = field(default_factory=list)  # per micro-batch, its mean loss
    sizes: list[int] = field(default_factory=list)  # samples per micro-batch (host metadata)
    penalties: list[torch.Tensor] = field(default_factory=list)  # per optimizer step
    step_sizes: list[int] = field(default_factory=list)  # samples per optimizer step
    predictions: list[torch.Tensor] = field(default_factory=list)  # class indices
    targets: list[torch.Tensor] = field(default_factory=list)
    norms: list[torch.Tensor] = field(default_factory=list)  # gradient norm before clipping

    @property
    def samples(self) -> int:
        """Samples seen this epoch."""
        return sum(self.sizes)

    def reduce(self, device: torch.device) -> dict[str, Any]:
        """``train_loss`` (sample-weighted), ``train_accuracy``, ``train_penalty``, norms."""
        n = self.samples
        out: dict[str, Any] = {}
        if self.losses:
            w = torch.tensor(self.sizes, dtype=torch.float64, device=device)
            out["train_loss"] = float((torch.stack(self.losses).double() * w).sum()) / n
        if self.predictions:
            truth = torch.cat([t.reshape(-1) for t in self.targets])
            out["train_accuracy"] = int((torch.cat(self.predictions) == truth).sum()) / n
        if self.penalties:
            w = torch.tensor(self.step_sizes, dtype=torch.float64, device=device)
            out["train_penalty"] = float((torch.stack(self.penalties).double() * w).sum()) / n
        return out

    def norm_metrics(self) -> dict[str, Any]:
        """``grad_norm_mean`` (finite steps), ``grad_norm_max`` and every step's norm."""
        if not self.norms:
            return {}
        norms = torch.stack([g.double() for g in self.norms]).tolist()
        finite = [g for g in norms if math.isfinite(g)]
        return {"grad_norm_mean": sum(finite) / len(finite) if finite else float("nan"),
                "grad_norm_max": max(norms), "grad_norms": norms}
