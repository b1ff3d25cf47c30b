"""User data for the doctor's cases: what the built-in sources cannot say.

A case names one with ``data.target = "case_data:NAME"`` (the config's folder is on the
import path). Both start from scikit-learn's digits as ``data.source = "digits"`` loads them
(same split, standardized with training statistics):

- :func:`noisy_digits`: a share of the *training* labels replaced by another class, drawn
  from the seed; validation and test labels stay clean (label noise → overfitting);
- :func:`onehot_digits`: the labels as one-hot float targets, a regression task, for
  probability heads under a distance loss (MSE/MAE on one-hot targets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainwell.data import Dataset, Split, load


def noisy_digits(noise: float = 0.4, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """Digits with ``noise`` of the training labels moved to a uniformly drawn other class."""
    data = load("digits", seed=seed, val_fraction=val_fraction)
    y = data.train.y.clone()
    k = int(data.num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    flip = torch.rand(len(y), generator=g) < noise
    shift = torch.randint(1, k, (len(y),), generator=g)  # never the true class
    y[flip] = (y[flip] + shift[flip]) % k
    return Dataset(Split(data.train.x, y), data.val, data.test, "classification", k,
                   f"digits, {noise:.0%} training labels noisy", dict(data.info))


def onehot_digits(seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """Digits with one-hot float targets: a 10-output regression task."""
    data = load("digits", seed=seed, val_fraction=val_fraction)
    k = int(data.num_classes)

    def onehot(s: Split) -> Split:
        return Split(s.x, F.one_hot(s.y, k).to(torch.float32))

    return Dataset(onehot(data.train), onehot(data.val), onehot(data.test), "regression",
                   None, "digits, one-hot targets", dict(data.info))
