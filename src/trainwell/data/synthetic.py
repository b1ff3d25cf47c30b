"""Synthetic classification and regression data, deterministic per seed.

Classification kinds (``task="classification"``):

- ``gaussian``: class-conditional Gaussian clusters in ``d = num_features`` dimensions.
  Centers μ_k ~ N(0, I_d) for k = 0..K-1; labels y uniform over the K classes (balanced:
  sample i has class i mod K before shuffling); x = μ_y + 10·noise·ε, ε ~ N(0, I_d). The
  default noise 0.1 gives unit within-class spread.
- ``blobs``: ``sklearn.datasets.make_blobs`` with K centers in the box [-10, 10]^d (d = 2
  by default) and ``cluster_std = 10·noise`` (the default 0.1 gives scikit-learn's
  default spread 1.0).
- ``circles``: ``make_circles(noise=noise, factor=0.5)``, two classes in 2-D.
- ``moons``: ``make_moons(noise=noise)``, two classes in 2-D.

Regression (``task="regression"``, T = num_targets): x ~ N(0, I_d), W ~ N(0, I_{d×T}),

    y_t = (x · W_{:,t}) / √d + 0.5 · sin(π · x_{t mod d}) + noise · ε_t,   ε ~ N(0, 1),

a linear part of unit variance, a smooth nonlinear part a linear model cannot fit, and
noise. ``y`` is float32 ``(N, T)``; targets are not standardized.

Gaussian and regression draw from ``numpy.random.default_rng(seed)``; the scikit-learn
kinds pass ``random_state=seed``. The returned x, y are then split into train/test by
:func:`trainwell.data.load` with ``test_fraction``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["load_synthetic", "KINDS"]

KINDS = ("gaussian", "blobs", "circles", "moons")
_TWO_D = ("circles", "moons")  # fixed to 2 features, 2 classes
_NOISE_SCALE = 10.0  # gaussian/blobs: within-class std = 10 * noise


_MAX_SIZE = 10_000_000  # samples, features, classes or targets: past this is a typo
_MAX_BYTES = 8 << 30  # x is generated in float64: samples × features × 8 bytes at most


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if value > _MAX_SIZE:
        raise UserError(f"{name}: {value} past the limit of {_MAX_SIZE}")
    return value


def load_synthetic(
    *,
    seed: int,
    task: str = "classification",
    kind: str = "gaussian",
    num_samples: int = 2000,
    num_features: int | None = None,
    num_classes: int | None = None,
    num_targets: int = 1,
    noise: float = 0.1,
    test_fraction: float = 0.2,
) -> dict:
    """Generate a synthetic dataset (the ``synthetic`` source); formulas in the module doc.

    Args:
        seed: seeds the generator (and the later splits).
        task: ``"classification"`` or ``"regression"``.
        kind: classification generator, one of ``gaussian, blobs, circles, moons``.
        num_samples: total samples, train + val + test.
        num_features: input dimension d; default 20 (gaussian, regression) or 2 (blobs,
            and circles, moons, which allow only 2).
        num_classes: K; default 3 (gaussian, blobs) or 2 (circles, moons, only 2).
        num_targets: regression outputs T.
        noise: noise level, see the module doc (>= 0).
        test_fraction: share of samples held out for test, in (0, 1).

    Returns:
        Raw ``x, y`` plus ``test_fraction`` for :mod:`trainwell.data.sources`.

    Raises:
        UserError: unknown task or kind, sizes that are not positive integers, noise < 0,
            test_fraction outside (0, 1), or a kind asked for sizes it cannot make.
    """
    if task not in ("classification", "regression"):
        raise UserError(f"task: unknown task {task!r}; use 'classification' or 'regression'")
    if kind not in KINDS:
        raise UserError(f"kind: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    n = _positive_int("num_samples", num_samples, 10)
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise < 1e6:
        raise UserError(f"noise: must be a number in [0, 1e6), got {noise!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise UserError(f"test_fraction: must be a number in (0, 1), got {test_fraction!r}")
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    noise = float(noise)
    two_d = task == "classification" and kind in _TWO_D
    default_d = 2 if task == "classification" and kind in (*_TWO_D, "blobs") else 20
    d = _positive_int("num_features", num_features if num_features is not None else default_d)
    if n * d * 8 > _MAX_BYTES:
        raise UserError(
            f"num_samples: {n} samples of {d} features need {n * d * 8:,} bytes, past the "
            f"limit of {_MAX_BYTES:,}; use fewer samples or features"
        )
    info: dict = {"task": task, "noise": noise, "num_features": d}

    if task == "regression":
        t = _positive_int("num_targets", num_targets)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, d))
        w = rng.standard_normal((d, t))
        cols = np.arange(t) % d
        y = (
            x @ w / math.sqrt(d)
            + 0.5 * np.sin(math.pi * x[:, cols])
            + noise * rng.standard_normal((n, t))
        )
        info.update(
            num_targets=t, formula="y = x W / sqrt(d) + 0.5 sin(pi x_(t mod d)) + noise eps"
        )
        return _raw(x, y.astype(np.float32), "regression", None, test_fraction, info)

    k = _positive_int(
        "num_classes", num_classes if num_classes is not None else (2 if two_d else 3), 2
    )
    info.update(kind=kind, num_classes=k)
    if two_d and (d != 2 or k != 2):
        raise UserError(
            f"kind: {kind} makes 2 features and 2 classes, got num_features={d}, "
            f"num_classes={k}; leave them unset or use kind=gaussian"
        )
    if kind == "gaussian":
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((k, d))
        y = rng.permutation(np.arange(n) % k)
        x = centers[y] + _NOISE_SCALE * noise * rng.standard_normal((n, d))
    else:
        from sklearn import datasets  # imported lazily: slow import

        if kind == "blobs":
            x, y = datasets.make_blobs(
                n_samples=n,
                n_features=d,
                centers=k,
                cluster_std=_NOISE_SCALE * noise,
                random_state=seed,
            )
        elif kind == "circles":
            x, y = datasets.make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
        else:
            x, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return _raw(x, y.astype(np.int64), "classification", k, test_fraction, info)


def _raw(
    x: np.ndarray, y: np.ndarray, task: str, num_classes: int | None, test_fraction: float,
    info: dict[str, Any],
) -> dict[str, Any]:
    return {
        "x": np.ascontiguousarray(x, dtype=np.float32),
        "y": y,
        "test_fraction": float(test_fraction),
        "task": task,
        "num_classes": num_classes,
        "info": info,
    }
