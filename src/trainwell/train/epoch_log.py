"""The per-step values of one epoch, kept on the device and reduced once at its end.

A few small tensor ops per step are measurable next to a small MLP's step on a CPU, and any
``.item()`` waits for a GPU: so the loop only appends references here (losses, predicted
class indices — 8 bytes a sample, not logits — and gradient norms when clipping or asked),
and :meth:`EpochLog.reduce` turns them into numbers once per epoch.

With several processes each rank logs its own shard: ``reduce`` sums the loss, the correct
predictions and the samples over ranks in one all-reduce of three float64 numbers, so every
rank gets the global epoch's metrics (float64 sums of float32 losses: equal to one process's
up to rounding). Penalties and gradient norms are identical on all ranks (computed on the
same weights and the already averaged gradients) and are not summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .distributed import Distributed, all_reduce_sum

__all__ = ["EpochLog"]


@dataclass
class EpochLog:
    """What one epoch's steps leave behind; ``reduce`` gives the epoch's train metrics."""

    losses: list[torch.Tensor] = field(default_factory=list)  # per micro-batch, its mean loss
    sizes: list[int] = field(default_factory=list)  # samples per micro-batch (host metadata)
    penalties: list[torch.Tensor] = field(default_factory=list)  # per optimizer step
    step_sizes: list[int] = field(default_factory=list)  # global samples per optimizer step
    predictions: list[torch.Tensor] = field(default_factory=list)  # class indices
    targets: list[torch.Tensor] = field(default_factory=list)
    norms: list[torch.Tensor] = field(default_factory=list)  # gradient norm before clipping

    @property
    def samples(self) -> int:
        """Samples seen this epoch."""
        return sum(self.sizes)

    def sums(self, device: torch.device) -> torch.Tensor:
        """``[Σ loss·n, correct predictions, samples]`` of this process, float64 on ``device``."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        if self.losses:
            w = torch.tensor(self.sizes, dtype=torch.float64, device=device)
            loss_sum = (torch.stack(self.losses).double() * w).sum()
        correct = torch.zeros((), dtype=torch.float64, device=device)
        if self.predictions:
            truth = torch.cat([t.reshape(-1) for t in self.targets])
            correct = (torch.cat(self.predictions) == truth).sum().double()
        n = torch.tensor(float(self.samples), dtype=torch.float64, device=device)
        return torch.stack([loss_sum, correct, n])

    def reduce(self, device: torch.device, info: Distributed | None = None) -> dict[str, Any]:
        """``train_loss`` (sample-weighted), ``train_accuracy``, ``train_penalty``.

        Args:
            device: where the per-step values are.
            info: with several processes, sum over ranks first (every rank must call this).
        """
        info = info or Distributed()
        out: dict[str, Any] = {}
        loss_sum, correct, n = all_reduce_sum(self.sums(device), info).tolist()
        if self.losses or info.active:
            out["train_loss"] = loss_sum / n if n else float("nan")
        if self.predictions:
            out["train_accuracy"] = correct / n if n else float("nan")
        if self.penalties:
            w = torch.tensor(self.step_sizes, dtype=torch.float64, device=device)
            total = sum(self.step_sizes)
            out["train_penalty"] = float((torch.stack(self.penalties).double() * w).sum()) / total
        return out

    def norm_metrics(self) -> dict[str, Any]:
        """``grad_norm_mean`` (finite steps), ``grad_norm_max`` and every step's norm."""
        if not self.norms:
            return {}
        norms = torch.stack([g.double() for g in self.norms]).tolist()
        finite = [g for g in norms if math.isfinite(g)]
        return {"grad_norm_mean": sum(finite) / len(finite) if finite else float("nan"),
                "grad_norm_max": max(norms), "grad_norms": norms}
