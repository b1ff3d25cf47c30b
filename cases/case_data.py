"""User data for the doctor's cases: what the built-in sources cannot say.

A case names one with ``data.target = "case_data:NAME"`` (the config's folder is on the
import path):

- :func:`noisy_digits`: scikit-learn's digits as ``data.source = "digits"`` loads them (same
  split, standardized with training statistics) with a share of the *training* labels
  moved to another class; validation and test labels stay clean (label noise → overfitting);
- :func:`scaled_regression`: ``data.source = "synthetic"``'s regression task with its
  targets in larger units (a user's prices or counts), for bounded output heads.
"""

from __future__ import annotations

import torch

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


def scaled_regression(scale: float = 10.0, seed: int = 0, num_samples: int = 1000,
                      num_features: int = 20, val_fraction: float = 0.1) -> Dataset:
    """The synthetic regression task (targets ~N(0, 1.1²)) with its targets times ``scale``."""
    data = load("synthetic", seed=seed, val_fraction=val_fraction, task="regression",
                num_samples=num_samples, num_features=num_features)

    def scaled(s: Split) -> Split:
        return Split(s.x, s.y * scale)

    return Dataset(scaled(data.train), scaled(data.val), scaled(data.test), "regression", None,
                   f"synthetic regression, targets x{scale:g}", dict(data.info))
