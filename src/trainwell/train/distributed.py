"""Data parallelism on PyTorch's own engine: ``DistributedDataParallel`` under ``torchrun``.

trainwell never starts processes. ``torchrun`` (or Slurm/Kubernetes running ``torchrun``)
starts them and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`from_env` reads them and joins the process group (gloo on the CPU,
NCCL on CUDA). Without those variables everything here is a no-op for one process.

The split is defined so that N processes train *the same run* as one process:

- ``train.batch_size`` is the **global** batch. Every rank draws the same per-epoch
  permutation (seeded by the run's seed and the epoch), cuts the same global batches, and
  takes its own contiguous slice of each (:func:`shard`): ranks see disjoint samples and
  together every sample once per epoch.
- DDP averages gradients over ranks. A rank's mean loss is weighted by
  ``n_r · W / N`` (:func:`loss_weight`), so the average of the ranks' gradients equals the
  gradient of the mean loss over the global batch, also for a smaller last batch.
- Per-epoch sums (loss, correct predictions, samples) are summed over ranks once per
  epoch (:func:`all_reduce_sum`); so are the validation sums, each rank evaluating its
  shard of in-memory validation data (torch validation data: every rank evaluates all of
  it). Only rank 0 writes files.
- Each optimizer step's loss reaches every rank without a collective of its own: it rides
  in DDP's gradient all-reduce as the gradient of one zero parameter (:class:`LossCarrier`),
  so every rank holds the global batch's loss when its backward ends. Since DDP has made
  the gradients identical too, the non-finite guard's flag — a function of that loss and
  the gradients — is the same on every rank, and all ranks skip the same steps (the
  skipped-step count needs no reduction). A rank whose loss is NaN or ±Inf makes the
  carried loss non-finite on every rank.

What is exact: for in-memory data and map-style torch Datasets that trainwell batches, the
ranks together see exactly the single-process global batches, so for models without batch
norm the weights equal a one-process run's up to float rounding of the sums. Batch norm
normalizes each rank's shard with its own statistics (as one process with a smaller batch
would) unless ``sync_batch_norm`` converts it to ``SyncBatchNorm``. A user's own
``DataLoader`` is iterated as given on every rank (give it a ``DistributedSampler``); its
batches are weighted equally (DDP's plain average), exact when the ranks' batches have equal
sizes, and every rank must yield the same number of batches or DDP waits forever.

Several machines: run the same ``torchrun`` on each node with a shared rendezvous, e.g.
``torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400
--rdzv-id=JOB -m trainwell train CONFIG --out RUN`` (Slurm: one ``srun`` task per node, HOST
the first node of ``$SLURM_JOB_NODELIST``; Kubernetes: one pod per node, HOST a headless
service of pod 0, or the PyTorchJob operator which sets these). ``--out`` must be a folder
rank 0 can write and every node can read, for ``--resume``.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.loaders import shard  # the data layer cuts the shards; re-exported here

__all__ = ["Distributed", "LossCarrier", "all_gather_bytes", "all_reduce_sum", "average_gradients",
           "barrier", "carrier_of", "from_env", "grad_sync", "is_main_process", "loss_weight",
           "shard", "shutdown", "weight_rank_loss", "wrap"]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel job (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes the run folder and prints."""
        return self.rank == 0


def from_env(device: torch.device) -> Distributed:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Args:
        device: the device this process trains on; CUDA selects NCCL and the GPU
            ``LOCAL_RANK``, anything else gloo.

    Returns:
        This process's :class:`Distributed`; rank 0 of 1 when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ValueError: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` that are not integers, or a rank
            outside ``[0, WORLD_SIZE)``.
    """
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK: must be integers; start the job "
                         "with torchrun, which sets them") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK: {rank} is outside [0, WORLD_SIZE={world}); start the job "
                         "with torchrun, which sets them")
    if world == 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Distributed(rank=rank, world_size=world, local_rank=local)


def loss_weight(local_n: int, global_n: int, world_size: int) -> float:
    """Factor on a rank's *mean* loss so DDP's gradient average is the global mean's gradient.

    DDP computes ``(1/W) Σ_r ∇L_r``. With ``L_r = w_r · mean_r`` and ``w_r = n_r · W / N``
    that is ``Σ_r (n_r / N) ∇mean_r = ∇((1/N) Σ_samples loss)``.
    """
    if global_n < 1:
        raise ValueError(f"loss_weight: global_n must be >= 1, got {global_n}")
    return local_n * world_size / global_n


def weight_rank_loss(loss: torch.Tensor, local_n: int, global_n: int,
                     info: Distributed) -> torch.Tensor:
    """This rank's mean ``loss`` of ``local_n`` samples, weighted by :func:`loss_weight`.

    One process: ``loss`` itself. An empty shard (a last global batch smaller than the world)
    gives a zero loss instead of its NaN mean; its backward must still run, because DDP's
    gradient all-reduce waits for every rank.
    """
    if not info.active:
        return loss
    if local_n == 0:
        return loss.nan_to_num(0.0) * 0.0
    return loss * loss_weight(local_n, global_n, info.world_size)


def all_reduce_sum(tensor: torch.Tensor, info: Distributed) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op for one process); returns it."""
    if info.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class LossCarrier(nn.Module):
    """The model plus one zero parameter whose gradient is the step's loss, averaged by DDP.

    A per-step loss all-reduce of its own costs a collective round trip per step (13 % of a
    2-process CPU step here); the gradient all-reduce DDP runs anyway can carry it. Backward
    of ``L + c·sg(ℓ)`` with ``c = 0`` (``sg``: stop-gradient) leaves every weight's gradient
    exactly that of ``L`` and gives ``∂/∂c = ℓ``; DDP averages it with the rest, so after
    backward ``c.grad = (1/W) Σ_r ℓ_r`` on every rank. With ``ℓ_r = w_r · mean_r``
    (:func:`loss_weight`) that is the global batch's mean loss. Under ``no_sync()`` the
    gradient adds up over micro-batches like every other.

    ``forward`` is the model's; the carrier never enters the optimizer (it stays 0) and is
    not part of the model's state dict.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.carrier = nn.Parameter(torch.zeros(1, device=device))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The model's forward."""
        return self.model(*args, **kwargs)

    def term(self, loss: torch.Tensor) -> torch.Tensor:
        """``c · sg(loss)``: add it to what backward runs on; its value is 0 for a finite loss."""
        return (self.carrier * loss.detach().float()).sum()

    def take(self) -> torch.Tensor:
        """The carried loss after backward (a 0-dim tensor), and a clean slate for the next step."""
        grad = self.carrier.grad
        if grad is None:
            raise RuntimeError("LossCarrier.take: no backward has run since the last take")
        self.carrier.grad = None
        return grad[0]


def carrier_of(net: nn.Module) -> LossCarrier | None:
    """The :class:`LossCarrier` inside a DDP-wrapped ``net`` (None for one process)."""
    module = getattr(net, "module", None)
    return module if isinstance(module, LossCarrier) else None


def all_gather_bytes(data: bytes, info: Distributed, device: torch.device) -> list[bytes]:
    """Every rank's ``data``, in rank order (``[data]`` for one process).

    For what only rank 0 writes but every rank holds its own of (a mid-epoch checkpoint's
    epoch log and RNG states). Two all-gathers: the lengths, then the bytes padded to the
    longest. ``device``: where the collective runs (CUDA for NCCL).
    """
    if not info.active:
        return [data]
    mine = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
        torch.empty(0, dtype=torch.uint8)
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    lengths = [int(s) for s in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    padded[:len(data)] = mine.to(device)
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return [part[:n].cpu().numpy().tobytes() for part, n in zip(parts, lengths)]


def grad_sync(ddp: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """DDP's ``no_sync()`` when ``sync`` is False, else a context that does nothing.

    Gradient accumulation under DDP: the micro-batches before the last of an optimizer
    step run their forward and backward inside ``no_sync()``, so their gradients only add
    up locally and the last backward all-reduces the sum: one all-reduce per optimizer step
    instead of one per micro-batch. (The mean over ranks of the local sums is the sum of the
    per-micro-batch means: the same gradient, up to float rounding.)
    """
    if sync or not isinstance(ddp, DistributedDataParallel):
        return _NO_CONTEXT
    return ddp.no_sync()


_NO_CONTEXT = nullcontext()  # reusable: entering it does nothing


def average_gradients(params: list[torch.Tensor], info: Distributed) -> None:
    """Average the parameters' gradients over ranks in place (what DDP's backward does).

    For an epoch's last, short accumulation group of a stream of unknown length: its
    micro-batches ran inside ``no_sync()`` because none was known to be the last.
    """
    if not info.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
    torch._foreach_div_(grads, info.world_size)


def barrier(info: Distributed) -> None:
    """Wait until every rank is here (a no-op for one process)."""
    if info.active:
        dist.barrier()


def wrap(model: nn.Module, info: Distributed, device: torch.device,
         sync_batch_norm: bool = False) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when several processes train, else itself.

    Args:
        model: the module on ``device``; it stays the one the optimizer, checkpoints, the
            doctor's hooks and evaluation use (DDP only adds the gradient all-reduce). DDP
            wraps it in a :class:`LossCarrier`.
        info: this process's place in the job.
        device: the training device (CUDA: DDP's ``device_ids``).
        sync_batch_norm: convert batch-norm layers to ``SyncBatchNorm`` first, in place
            (statistics over the global batch; one all-reduce per layer per forward).

    Raises:
        ValueError: ``sync_batch_norm`` on a device other than CUDA.
    """
    if not info.active:
        return model  # one process: nothing to synchronize, so sync_batch_norm is a no-op
    if sync_batch_norm:
        # torch 2.13's SyncBatchNorm.forward raises for CPU input in training under an
        # initialized process group ("expected input tensor to be on GPU or XPU"): say so
        # before training, in words that name the setting.
        if device.type != "cuda":
            raise ValueError("sync_batch_norm: SyncBatchNorm runs only on CUDA; train on GPUs "
                             "or leave it off (each rank's batch norm then sees its shard)")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else info.local_rank] \
        if device.type == "cuda" else None
    return DistributedDataParallel(LossCarrier(model, device), device_ids=ids)


def is_main_process() -> bool:
    """Whether this process is rank 0 by torchrun's ``RANK`` (True outside torchrun)."""
    return os.environ.get("RANK", "0") == "0"


def shutdown(meet: bool = False) -> None:
    """Leave the process group if this process joined one (at the end of a command).

    ``meet`` (a command that succeeded on this rank): the ranks meet once more first, so
    that none tears its connections down while another still writes the run's last files.
    After a failure the rank leaves at once: a barrier could wait for a rank that is stuck
    in a collective of its own, where leaving lets torchrun end the job.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if meet:
                dist.barrier()
        finally:
            dist.destroy_process_group()
