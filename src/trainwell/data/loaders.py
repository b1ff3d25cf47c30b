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
  torch's seeded RNG); trainwell cannot rewind a stream it does not own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from .dataset import Split

__all__ = ["BatchSource", "EpochSampler", "as_source", "batch_size_of", "epoch_seed",
           "to_device"]


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
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.n, self.seed, self.epoch).tolist())

    def __len__(self) -> int:
        return self.n


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
    """

    def __init__(self, *, split: Split | None = None, loader: DataLoader | None = None,
                 batch_size: int = 1, seed: int = 0, merge_single: bool = False) -> None:
        self.split, self.loader = split, loader
        self.dropped = False  # a last batch of one sample is dropped (a wrapped torch Dataset)
        self.batch_size, self.seed = batch_size, seed
        if split is not None:
            n = len(split)
            self.num_samples: int | None = n
            # A last batch of one sample breaks batch norm in training: fold it into the
            # batch before (the caller says so once); batch boundaries stay a pure function of n.
            self.merged = merge_single and n > batch_size and n % batch_size == 1
            self.num_batches: int | None = -(-n // batch_size) - int(self.merged)
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

    def epoch(self, epoch: int, device: torch.device, shuffle: bool = True) -> Iterator[Any]:
        """Yield the batches of epoch ``epoch``, on ``device``.

        In-memory: one gather by the epoch's permutation, then contiguous slices (the data
        are already on ``device``). Loaders: each batch is copied with ``non_blocking=True``,
        which overlaps the copy with compute when the loader pins memory.
        """
        if self.split is not None:
            x, y = self.split.x, self.split.y
            if shuffle:
                order = epoch_order(len(x), self.seed, epoch).to(x.device)
                x, y = x[order], y[order]
            bounds = list(range(0, len(x), self.batch_size)) + [len(x)]
            if self.merged:
                del bounds[-2]
            for a, b in zip(bounds[:-1], bounds[1:]):
                yield x[a:b], y[a:b]
            return
        assert self.loader is not None
        set_epoch = getattr(getattr(self.loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:  # EpochSampler, DistributedSampler
            set_epoch(epoch)
        # The loader draws its workers' seed and a shuffling sampler's seed from torch's
        # global RNG, in iter() or at the first batch depending on num_workers: both happen
        # here, from the state the Trainer seeded for this epoch, which is then restored so
        # that dropout sees the same numbers as on the in-memory path.
        state = torch.get_rng_state()
        batches = iter(self.loader)
        first = next(batches, None)
        torch.set_rng_state(state)
        if first is None:
            return
        yield to_device(first, device, non_blocking=True)
        for batch in batches:
            yield to_device(batch, device, non_blocking=True)


def as_source(data: Any, *, batch_size: int, seed: int, device: torch.device,
              num_workers: int = 0, merge_single: bool = False, shuffle: bool = True
              ) -> BatchSource:
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

    Raises:
        TypeError: ``data`` is none of the accepted kinds.
    """
    if isinstance(data, Split):
        return BatchSource(split=data.to(device), batch_size=batch_size, seed=seed,
                           merge_single=merge_single)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        return as_source(Split(data[0], data[1]), batch_size=batch_size, seed=seed,
                         device=device, merge_single=merge_single)
    if isinstance(data, DataLoader):
        return BatchSource(loader=data, batch_size=data.batch_size or batch_size, seed=seed)
    if isinstance(data, torch.utils.data.Dataset):
        pin = device.type == "cuda"  # page-locked memory lets the copy run asynchronously
        if isinstance(data, IterableDataset):
            loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                pin_memory=pin)
        else:
            n = len(data)  # type: ignore[arg-type]
            sampler = EpochSampler(n, seed) if shuffle else None
            loader = DataLoader(data, batch_size=batch_size, sampler=sampler,
                                num_workers=num_workers, pin_memory=pin,
                                drop_last=merge_single and n > batch_size and n % batch_size == 1)
        source = BatchSource(loader=loader, batch_size=batch_size, seed=seed)
        source.dropped = bool(loader.drop_last)
        return source
    raise TypeError(f"data: expected a trainwell Dataset, a torch Dataset or DataLoader, or an "
                    f"(x, y) pair of tensors; got {type(data).__name__}")
