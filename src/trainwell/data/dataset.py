"""In-memory datasets of tensors, their splits, and the fast batch iterator.

A :class:`Dataset` holds three :class:`Split` objects (train / val / test), each a pair of
tensors ``x`` (features, float32) and ``y`` (class indices as int64 for classification,
float32 targets of shape ``(N, k)`` for regression). Batching slices these tensors by a
permutation of indices: no per-sample Python and no ``DataLoader`` workers, which is what
makes small and medium in-memory problems fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = ["Split", "Dataset", "iterate_batches", "select_classes", "standardize"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """One split of a dataset: features ``x`` of shape ``(N, *feature_shape)`` and targets ``y``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split: x has {self.x.shape[0]} samples but y has {self.y.shape[0]}; "
                "features and targets must have the same first dimension"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split with both tensors on ``device``."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Dataset:
    """A train/val/test triple plus what a model needs to know about it.

    Attributes:
        train, val, test: the splits. ``val`` may be empty (0 samples).
        task: ``"classification"`` (``y`` int64 class indices) or ``"regression"``
            (``y`` float32 of shape ``(N, k)``).
        num_classes: number of classes for classification, else ``None``.
        name: the source it came from, e.g. ``"mnist1d"``.
        info: free-form facts about the source (sizes, standardization statistics).
    """

    train: Split
    val: Split
    test: Split
    task: Task
    num_classes: int | None
    name: str
    info: dict = field(default_factory=dict)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample's features, e.g. ``(40,)`` or ``(1, 28, 28)``."""
        return tuple(self.train.x.shape[1:])

    @property
    def in_features(self) -> int:
        """Number of input features of one flattened sample."""
        n = 1
        for d in self.feature_shape:
            n *= d
        return n

    @property
    def out_features(self) -> int:
        """Output units a model needs: classes, or regression targets."""
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return int(self.train.y.shape[1]) if self.train.y.ndim > 1 else 1


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``split`` by index slicing.

    With ``shuffle`` the order is ``torch.randperm(N, generator=generator)``, so a seeded
    generator gives the same batches on every run. The last, smaller batch is kept unless
    ``drop_last``.
    """
    n = len(split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        order = torch.randperm(n, generator=generator)
        x, y = split.x[order], split.y[order]  # one gather, then cheap contiguous slices
    else:
        x, y = split.x, split.y
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def standardize(
    train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, ...]:
    """Standardize features by the training split's per-feature mean and std.

    z = (x − μ_train) / (σ_train + eps) (σ_train ≤ 1e-6: divide by 1), with μ and σ computed over the training samples
    only, so no statistic leaks from validation or test data.

    Returns:
        ``(train_z, *others_z, mean, std)``.
    """
    mean = train.mean(dim=0, keepdim=True)
    std = train.std(dim=0, keepdim=True)
    # A feature constant over the training split (e.g. an always-blank pixel) is only
    # centred: dividing by its ~0 std would blow any other value up by 1/eps.
    denom = torch.where(std > 1e-6, std + eps, torch.ones_like(std))
    out = [(train - mean) / denom] + [(o - mean) / denom for o in others]
    return (*out, mean.squeeze(0), std.squeeze(0))


def select_classes(data: Dataset, classes: list[int]) -> Dataset:
    """Keep only samples of ``classes`` (in every split), relabelled ``0..k-1`` in that order.

    Example: ``select_classes(d, [8, 9])`` makes a binary task where 8 → 0 and 9 → 1.
    """
    if data.task != "classification":
        raise ValueError("classes: class selection needs a classification dataset")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes: must be distinct class indices, got {classes}")
    bad = [c for c in classes if not 0 <= c < (data.num_classes or 0)]
    if bad:
        raise ValueError(f"classes: {bad} not in 0..{(data.num_classes or 0) - 1}")
    lut = torch.full((data.num_classes or 0,), -1, dtype=torch.int64)
    lut[torch.tensor(classes)] = torch.arange(len(classes))

    def keep(split: Split) -> Split:
        new_y = lut[split.y]
        mask = new_y >= 0
        return Split(split.x[mask], new_y[mask])

    return Dataset(
        keep(data.train),
        keep(data.val),
        keep(data.test),
        data.task,
        len(classes),
        data.name,
        {**data.info, "classes": list(classes)},
    )
