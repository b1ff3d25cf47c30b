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
    # Correct predictions of the epoch's steps before a mid-epoch resume (their predictions
    # are not kept in the checkpoint, only this count); None when none were carried over.
    carried_correct: int | None = None

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
        if self.carried_correct is not None:  # an integer count: exact in any grouping
            correct = correct + self.carried_correct
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
        if self.predictions or self.carried_correct is not None:
            out["train_accuracy"] = correct / n if n else float("nan")
        if self.penalties:
            w = torch.tensor(self.step_sizes, dtype=torch.float64, device=device)
            total = sum(self.step_sizes)
            out["train_penalty"] = float((torch.stack(self.penalties).double() * w).sum()) / total
        return out

    def state_dict(self) -> dict[str, Any]:
        """The epoch so far as JSON-ready numbers, for a mid-epoch checkpoint (one host sync).

        Every per-step value is kept exactly (a float32 or float64 value is exactly a Python
        float), so the epoch's reduction after a resume equals the uninterrupted one bit for
        bit; predictions are kept as their count of correct ones.
        """
        def floats(values: list[torch.Tensor]) -> list[float]:
            return torch.stack([v.double() for v in values]).tolist() if values else []

        correct = None
        if self.predictions or self.carried_correct is not None:
            correct = int(self.sums(self.predictions[0].device if self.predictions
                                    else torch.device("cpu"))[1])
        return {"losses": floats(self.losses), "sizes": list(self.sizes),
                "loss_dtype": str(self.losses[0].dtype).removeprefix("torch.")
                if self.losses else None,
                "penalties": floats(self.penalties), "step_sizes": list(self.step_sizes),
                "norms": floats(self.norms), "correct": correct}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochLog:
        """The log :meth:`state_dict` described, its values back on ``device``.

        Losses regain their dtype (so the epoch's float64 sum runs over the same values),
        penalties and norms come back as float64 (they are only ever summed in float64).
        """
        dtype = getattr(torch, state.get("loss_dtype") or "float32")

        def tensors(values: list[float], kind: torch.dtype) -> list[torch.Tensor]:
            return list(torch.tensor(values, dtype=kind, device=device).unbind()) \
                if values else []

        return cls(losses=tensors(state["losses"], dtype), sizes=list(state["sizes"]),
                   penalties=tensors(state["penalties"], torch.float64),
                   step_sizes=list(state["step_sizes"]),
                   norms=tensors(state["norms"], torch.float64),
                   carried_correct=state.get("correct"))

    def norm_metrics(self) -> dict[str, Any]:
        """``grad_norm_mean`` (finite steps), ``grad_norm_max`` and every step's norm."""
        if not self.norms:
            return {}
        norms = torch.stack([g.double() for g in self.norms]).tolist()
        finite = [g for g in norms if math.isfinite(g)]
        return {"grad_norm_mean": sum(finite) / len(finite) if finite else float("nan"),
                "grad_norm_max": max(norms), "grad_norms": norms}
