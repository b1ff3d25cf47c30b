"""Adapters from any data pipeline to one thing the Trainer iterates: batches per epoch.

The Trainer accepts a :class:`~trainwell.data.Dataset` split (the in-memory fast path:
index slicing, no per-sample Python), a tuple ``(x, y)`` of tensors (the same fast path),
a map-style or iterable ``torch.utils.data.Dataset``, or a ``DataLoader``. Each becomes a
:class:`BatchSource`, whose ``epoch(e)`` yields the batches of epoch ``e``.

Order and resume:

- In-memory splits and map-style torch datasets are shuffled by
  ``torch.randperm(N, generator=seeded(epoch_seed(seed, e)))``: the order of epoch ``e`` is a
  pure function of the run's seed and ``e``, so a resumed run sees the same batches.
- A user's ``DataLoader`` keeps its own sampler. The Trainer seeds torch's global RNG at
  each epoch's start (``epoch_seed(seed, e) + 1``) before iterating it, so a
  ``shuffle=True`` loader without a generator of its own (and its workers' seeds) is a
  function of (seed, epoch) too; a sampler with its own generator is the user's to seed.
- An ``IterableDataset`` yields what it yields: resume restarts the checkpointed epoch and
  is exact only if the dataset's stream is a function of the epoch (for example it reads
  torch's seeded RNG); trainwell cannot rewind a stream it does not own, so it takes no
  mid-epoch checkpoints of one (:attr:`BatchSource.resumable_mid_epoch` is False).

Mid-epoch resume: ``epoch(e, device, start=k)`` yields the batches of epoch ``e`` from the
``k``-th on, the same ones an uninterrupted epoch yields there. In-memory data and the
map-style datasets trainwell batches (:class:`EpochSampler`, :class:`ShardedBatchSampler`)
skip the first ``k`` batches without loading them; a user's own ``DataLoader`` is iterated
from its start and its first ``k`` batches are loaded and dropped (its sampler's order is
its own: only iterating reproduces it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from itertools import chain
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from .dataset import Split

__all__ = ["BatchSource", "EpochSampler", "ShardedBatchSampler", "as_source", "batch_size_of",
           "epoch_seed", "shard", "to_device"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffling and dropout: a pure function of the run's seed.

    Deriving it per epoch (instead of carrying one generator through the run) is what makes
    resume exact without saving RNG state: epoch E draws the same numbers whether or not the
    process was restarted before it.
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` that epoch ``epoch`` visits (CPU, int64)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


class EpochSampler(Sampler[int]):
    """Shuffle a map-style dataset by :func:`epoch_order`; call ``set_epoch`` before iterating."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.skip = int(n), int(seed), 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch whose order the next iteration yields, less its first ``skip``
        indices (a mid-epoch resume: the samples of the batches already trained)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.n, self.seed, self.epoch)[self.skip:].tolist())

    def __len__(self) -> int:
        return max(self.n - self.skip, 0)


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


def _bounds(n: int, batch_size: int, merged: bool) -> list[int]:
    """Start of each global batch, then ``n``; a merged one-sample tail joins the batch before."""
    bounds = list(range(0, n, batch_size)) + [n]
    if merged:
        del bounds[-2]
    return bounds


class ShardedBatchSampler(Sampler[list[int]]):
    """The indices of one rank's shard of each global batch of :func:`epoch_order`.

    Like ``DistributedSampler`` but exact: the global batches are those one process draws
    (``batch_size`` consecutive indices of the epoch's permutation), and rank ``r`` yields its
    contiguous :func:`~trainwell.train.distributed.shard` of each, so no sample is padded or
    repeated. Call ``set_epoch`` before iterating.

    Raises:
        ValueError: a last global batch smaller than ``world_size`` (a rank would get an empty
            batch, which a DataLoader cannot collate); choose another batch size.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle, self.epoch = rank, world_size, shuffle, 0
        self.skip = 0
        self.bounds = _bounds(self.n, self.batch_size, False)
        if drop_last and self.n % self.batch_size:
            del self.bounds[-1]
        tail = self.bounds[-1] - self.bounds[-2] if len(self.bounds) > 1 else 0
        if 0 < tail < world_size:
            raise ValueError(f"batch_size: the last batch of {n} samples holds {tail}, fewer "
                             f"than the {world_size} processes; choose a batch size with "
                             f"{n} mod batch_size = 0 or >= {world_size}")

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch whose order the next iteration yields, less its first ``skip``
        global batches (a mid-epoch resume)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else \
            torch.arange(self.n)
        bounds = self.bounds[self.skip:]
        for a, b in zip(bounds[:-1], bounds[1:]):
            lo, hi = shard(b - a, self.rank, self.world_size)
            yield order[a + lo:a + hi].tolist()

    def __len__(self) -> int:
        return max(len(self.bounds) - 1 - self.skip, 0)


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``batch`` with every tensor (inside tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (host metadata, no sync)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch
    for item in items:
        if isinstance(item, torch.Tensor):
            return int(item.shape[0])
    raise TypeError("a batch must hold at least one tensor (a tuple, list or dict of tensors)")


class BatchSource:
    """The batches of each epoch of one split, and how many samples and batches it has.

    Attributes:
        num_samples: samples per epoch, or None for an iterable of unknown length.
        num_batches: batches per epoch, or None when unknown.
        split: the in-memory split behind the fast path, else None.
        loader: the ``DataLoader`` behind a torch source, else None.
        resumable_mid_epoch: ``epoch(e, start=k)`` gives the batches an uninterrupted epoch
            gives from the k-th on: True for in-memory and map-style data, False for an
            ``IterableDataset`` (a stream cannot be rewound).
    """

    def __init__(self, *, split: Split | None = None, loader: DataLoader | None = None,
                 batch_size: int = 1, seed: int = 0, merge_single: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        self.split, self.loader = split, loader
        self.dropped = False  # a last batch of one sample is dropped (a wrapped torch Dataset)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        # Global batches the loader yields whole, for this source to slice (an iterable
        # Dataset trainwell batches); a map-style one is sharded by its batch sampler.
        self.slice_loader_batches = False
        # Samples per global batch, in order, when known (else each rank's batch counts as
        # 1/world_size of its step: a user's DataLoader).
        self.global_sizes: list[int] | None = None
        # The global size of the batch ``epoch`` yielded last, when known (also for a sliced
        # stream, whose batch sizes are known only as they come).
        self.current_global_size: int | None = None
        self.resumable_mid_epoch = split is not None or not isinstance(
            getattr(loader, "dataset", None), IterableDataset)
        if split is not None:
            n = len(split)
            self.num_samples: int | None = n
            # A last batch of one sample breaks batch norm in training: fold it into the
            # batch before (the caller says so once); batch boundaries stay a pure function of n.
            self.merged = merge_single and n > batch_size and n % batch_size == 1
            self.num_batches: int | None = -(-n // batch_size) - int(self.merged)
            bounds = _bounds(n, batch_size, self.merged)
            self.global_sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            assert loader is not None
            self.merged = False
            ds = loader.dataset
            sized = not isinstance(ds, IterableDataset) and isinstance(ds, Sized)
            self.num_samples = len(ds) if sized else None  # type: ignore[arg-type]
            try:
                self.num_batches = len(loader)
            except TypeError:  # an iterable dataset without __len__
                self.num_batches = None

    def epoch(self, epoch: int, device: torch.device, shuffle: bool = True, *, start: int = 0,
              restore: Callable[[], None] | None = None) -> Iterator[Any]:
        """Yield the batches of epoch ``epoch``, on ``device``.

        In-memory: one gather by the epoch's permutation, then contiguous slices (the data
        are already on ``device``). Loaders: each batch is copied with ``non_blocking=True``,
        which overlaps the copy with compute when the loader pins memory.

        Args:
            epoch: which epoch's order.
            device: where the batches go.
            shuffle: the epoch's permutation (training) or the stored order.
            start: skip the first ``start`` batches (a mid-epoch resume; see the module
                docstring for which are loaded anyway); needs :attr:`resumable_mid_epoch`.
            restore: called once, after the loader has drawn its seeds from torch's global
                RNG and before batch ``start`` is loaded: a resume puts back the RNG state the
                interrupted run had there, so loading and dropout draw what they drew.
        """
        if start and not self.resumable_mid_epoch:
            raise ValueError("start: an IterableDataset cannot be rewound to a batch")
        if self.split is not None:
            if restore is not None:
                restore()
            if self.world_size > 1:
                yield from self._local_slices(epoch, shuffle, start)
                return
            x, y = self.split.x, self.split.y
            if shuffle:
                order = epoch_order(len(x), self.seed, epoch).to(x.device)
                x, y = x[order], y[order]
            bounds = list(range(0, len(x), self.batch_size)) + [len(x)]
            if self.merged:
                del bounds[-2]
            bounds = bounds[start:]
            for a, b in zip(bounds[:-1], bounds[1:]):
                yield x[a:b], y[a:b]
            return
        assert self.loader is not None
        for sampler in (self.loader.sampler, self.loader.batch_sampler):
            set_epoch = getattr(sampler, "set_epoch", None)
            if set_epoch is not None:  # EpochSampler, ShardedBatchSampler, DistributedSampler
                set_epoch(epoch)
        drop = start  # batches to load and drop: a user's loader cannot skip unloaded
        if start and isinstance(self.loader.batch_sampler, ShardedBatchSampler):
            self.loader.batch_sampler.set_epoch(epoch, skip=start)
            drop = 0
        elif start and isinstance(self.loader.sampler, EpochSampler) and self.loader.batch_size:
            self.loader.sampler.set_epoch(epoch, skip=start * self.loader.batch_size)
            drop = 0
        # The loader draws its workers' seed and a shuffling sampler's seed from torch's
        # global RNG, in iter() or at the first batch depending on num_workers: both happen
        # here, from the state the Trainer seeded for this epoch, which is then restored so
        # that dropout sees the same numbers as on the in-memory path.
        state = torch.get_rng_state()
        batches = iter(self.loader)
        for _ in range(drop):
            next(batches, None)
        if restore is not None:
            # The interrupted run loaded batch `start` (num_workers = 0: in this process)
            # with the RNG state it had after the step before: the one restore() puts back.
            restore()
            first = next(batches, None)
        else:
            first = next(batches, None)
            torch.set_rng_state(state)
        if first is None:
            return
        sizes = iter((self.global_sizes or [])[start:])
        for batch in chain([first], batches):
            self.current_global_size = next(sizes, None)
            if self.slice_loader_batches:
                self.current_global_size = batch_size_of(batch)
                lo, hi = shard(self.current_global_size, self.rank, self.world_size)
                batch = _slice(batch, lo, hi)
            yield to_device(batch, device, non_blocking=True)

    def _local_slices(self, epoch: int, shuffle: bool, start: int = 0) -> Iterator[Any]:
        """This rank's shard of each in-memory global batch from the ``start``-th: one gather."""
        assert self.split is not None and self.global_sizes is not None
        n = len(self.split)
        order = epoch_order(n, self.seed, epoch) if shuffle else torch.arange(n)
        a = sum(self.global_sizes[:start])
        wholes = self.global_sizes[start:]
        pieces, sizes = [], []
        for size in wholes:
            lo, hi = shard(size, self.rank, self.world_size)
            pieces.append(order[a + lo:a + hi])
            sizes.append(hi - lo)
            a += size
        if not pieces:
            return
        local = torch.cat(pieces).to(self.split.x.device)
        x, y = self.split.x[local], self.split.y[local]
        at = 0
        for size, whole in zip(sizes, wholes):
            self.current_global_size = whole
            yield x[at:at + size], y[at:at + size]
            at += size


def _slice(batch: Any, lo: int, hi: int) -> Any:
    """Samples ``[lo, hi)`` of every tensor in a batch (tuples, lists, dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(b, lo, hi) for b in batch)
    if isinstance(batch, dict):
        return {k: _slice(v, lo, hi) for k, v in batch.items()}
    return batch


def as_source(data: Any, *, batch_size: int, seed: int, device: torch.device,
              num_workers: int = 0, merge_single: bool = False, shuffle: bool = True,
              rank: int = 0, world_size: int = 1) -> BatchSource:
    """Wrap ``data`` (a Split, ``(x, y)`` tensors, a torch Dataset or a DataLoader).

    Args:
        data: what to iterate.
        batch_size: samples per batch when trainwell does the batching (not for a DataLoader).
        seed: the run's seed (shuffling order, see :func:`epoch_order`).
        device: where batches go; in-memory tensors are moved there once.
        num_workers: DataLoader workers for a torch Dataset trainwell wraps.
        merge_single: a last batch of one sample is merged (in memory) or dropped (a torch
            Dataset trainwell wraps), for models with batch norm.
        shuffle: shuffle map-style data (training); False keeps the order (evaluation).
        rank, world_size: this process's shard of each global batch of ``batch_size``
            (see the module docstring); a user's DataLoader is not sharded.

    Raises:
        TypeError: ``data`` is none of the accepted kinds.
        ValueError: a map-style Dataset whose last global batch is smaller than
            ``world_size``.
    """
    if isinstance(data, Split):
        return BatchSource(split=data.to(device), batch_size=batch_size, seed=seed,
                           merge_single=merge_single, rank=rank, world_size=world_size)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        return as_source(Split(data[0], data[1]), batch_size=batch_size, seed=seed,
                         device=device, merge_single=merge_single, rank=rank,
                         world_size=world_size)
    if isinstance(data, DataLoader):
        return BatchSource(loader=data, batch_size=data.batch_size or batch_size, seed=seed)
    if isinstance(data, torch.utils.data.Dataset):
        pin = device.type == "cuda"  # page-locked memory lets the copy run asynchronously
        sizes = None
        if isinstance(data, IterableDataset):
            loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                pin_memory=pin)
        else:
            n = len(data)  # type: ignore[arg-type]
            drop = merge_single and n > batch_size and n % batch_size == 1
            if world_size > 1:
                batches = ShardedBatchSampler(n, batch_size, seed, rank, world_size,
                                              shuffle=shuffle, drop_last=drop)
                b = batches.bounds
                sizes = [hi - lo for lo, hi in zip(b[:-1], b[1:])]
                loader = DataLoader(data, batch_sampler=batches, num_workers=num_workers,
                                    pin_memory=pin)
            else:
                sampler = EpochSampler(n, seed) if shuffle else None
                loader = DataLoader(data, batch_size=batch_size, sampler=sampler,
                                    num_workers=num_workers, pin_memory=pin, drop_last=drop)
        source = BatchSource(loader=loader, batch_size=batch_size, seed=seed, rank=rank,
                             world_size=world_size)
        source.dropped = bool(loader.drop_last) or (sizes is not None and drop)
        source.global_sizes = sizes
        source.slice_loader_batches = world_size > 1 and isinstance(data, IterableDataset)
        return source
    raise TypeError(f"data: expected a trainwell Dataset, a torch Dataset or DataLoader, or an "
                    f"(x, y) pair of tensors; got {type(data).__name__}")
