"""A fixed probe batch: probe statistics that do not depend on the training batch size.

Probes taken on the training batch lie at batch size 1: one sample leaves most ReLUs at 0
("100% dead") and can give the first layer an exactly-zero gradient that a 256-sample probe
does not show (DESIGN.md, "Measured facts"). So on a probe step the doctor runs its own
forward and backward pass on a fixed batch of training samples, drawn once from the run's
seed, and measures that — leaving the training step untouched: the optimizer's gradients
are put back, batch-norm statistics restored and the random state forked, so a run with
probes ends with bit-identical weights to one without.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .probes import Probe

__all__ = ["PROBE_SAMPLES", "draw_from_dataset", "draw_probe_batch", "probe_on_batch"]

PROBE_SAMPLES = 256  # enough that a live ReLU unit fires on some sample (P(all 0) ≈ 2^-256)


def draw_probe_batch(
    x: torch.Tensor, y: torch.Tensor, *, seed: int, samples: int = PROBE_SAMPLES
) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` training samples (all if fewer), chosen by a generator seeded with ``seed``.

    Args:
        x, y: the training inputs and targets (first axis: samples).
        seed: the run's seed (the same run draws the same batch).
        samples: how many to draw.

    Returns:
        ``(x[idx], y[idx])`` for a seeded random ``idx`` (on the tensors' device).
    """
    if samples < 1:
        raise ValueError(f"samples: must be >= 1, got {samples}")
    n = int(x.shape[0])
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen)[: min(samples, n)].to(x.device)
    return x.index_select(0, idx), y.index_select(0, idx)


def draw_from_dataset(
    dataset: Any, *, seed: int, samples: int = PROBE_SAMPLES
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`draw_probe_batch` for a map-style torch ``Dataset`` of ``(x, y)`` samples.

    The same seeded choice of indices; the samples are stacked with torch's default
    collate. None where the dataset cannot give one: no ``len`` (iterable), or samples
    that do not collate to two tensors — the doctor then probes the training batch.
    """
    if samples < 1:
        raise ValueError(f"samples: must be >= 1, got {samples}")
    try:
        n = len(dataset)
    except TypeError:
        return None
    if n == 0:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen)[: min(samples, n)].tolist()
    try:
        batch = torch.utils.data.default_collate([dataset[i] for i in idx])
    except (TypeError, RuntimeError, IndexError, KeyError):
        return None
    if (isinstance(batch, (list, tuple)) and len(batch) == 2
            and all(isinstance(t, torch.Tensor) for t in batch)):
        return batch[0], batch[1]
    return None


def probe_on_batch(
    probe: Probe,
    model: nn.Module,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Measure ``probe``'s forward and gradient statistics on ``batch``, side-effect free.

    Runs ``probe.arm()``, a forward pass in the model's current mode, the loss and
    ``torch.autograd.backward``, then ``probe.grads()`` (which also snapshots the weights
    for the update ratio of the coming optimizer step). Before returning it puts back every
    parameter's ``.grad`` (the same tensor objects), every buffer's values (batch-norm
    running statistics and counters) and the random state (dropout draws inside a forked
    RNG), so the training step that follows is exactly what it would have been.

    Args:
        probe: the :class:`Probe` of ``model``.
        model: the (unwrapped) model.
        loss_fn: ``(outputs, targets) -> loss``.
        batch: ``(x, y)`` on the model's device.
    """
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    saved_buffers = [b.detach().clone() for b in model.buffers()]
    x, y = batch
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        for p in params:
            p.grad = None
        with torch.random.fork_rng(devices=devices):
            probe.arm()
            with torch.enable_grad():
                loss = loss_fn(model(x), y)
                if loss.requires_grad:
                    loss.backward()
            probe.disarm()  # keeps the statistics; the training forward passes stay unhooked
            probe.grads()
    finally:
        for p, g in zip(params, saved_grads, strict=True):
            p.grad = g
        with torch.no_grad():
            for b, v in zip(model.buffers(), saved_buffers, strict=True):
                b.copy_(v)
