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
- Per-epoch sums (loss, correct predictions, skipped steps) are summed over ranks once per
  epoch (:func:`all_reduce_sum`); only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Distributed", "all_reduce_sum", "from_env", "loss_weight", "shard"]


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


def shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The slice ``[lo, hi)`` of a global batch of ``n`` samples that ``rank`` trains on.

    Contiguous and near-equal: the first ``n mod W`` ranks take one sample more. A rank may
    get an empty slice when ``n < W`` (the last batch of an epoch).

    Example:
        >>> [shard(10, r, 4) for r in range(4)]
        [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"shard: need 0 <= rank < world_size and n >= 0, got n={n}, "
                         f"rank={rank}, world_size={world_size}")
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def loss_weight(local_n: int, global_n: int, world_size: int) -> float:
    """Factor on a rank's *mean* loss so DDP's gradient average is the global mean's gradient.

    DDP computes ``(1/W) Σ_r ∇L_r``. With ``L_r = w_r · mean_r`` and ``w_r = n_r · W / N``
    that is ``Σ_r (n_r / N) ∇mean_r = ∇((1/N) Σ_samples loss)``.
    """
    if global_n < 1:
        raise ValueError(f"loss_weight: global_n must be >= 1, got {global_n}")
    return local_n * world_size / global_n


def all_reduce_sum(tensor: torch.Tensor, info: Distributed) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (a no-op for one process); returns it."""
    if info.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
