"""MNIST-1D, generated offline by the ``mnist1d`` package and cached as ``.npz``.

MNIST-1D (Greydanus & Kobak, 2020, "Scaling down deep learning with MNIST-1D") turns ten
1-D digit templates into 40-point signals by random padding, translation, shear,
correlated and i.i.d. noise. ``mnist1d.data.make_dataset`` generates it from the
package's default arguments, whose own ``seed=42`` is kept, so a given ``num_samples``
always yields the canonical dataset and the package's 80/20 train/test split.

Generation takes about 6 s for 20,000 samples and reseeds Python's and NumPy's global
random generators; this module restores both states afterwards and caches the arrays
under the trainwell cache folder, keyed by ``num_samples`` and a hash of the arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["load_mnist1d", "generate_mnist1d"]

_KEYS = ("x_train", "y_train", "x_test", "y_test")
_MIN_SAMPLES = 100  # 10 per class, so every split gets each class


def _dataset_args(num_samples: int) -> object:
    from mnist1d.data import get_dataset_args  # imported lazily: pulls in matplotlib

    args = get_dataset_args()
    args.num_samples = num_samples
    return args


def _args_key(args: object) -> str:
    """A short hash of every generation argument except the download URL."""
    fields = {k: v for k, v in sorted(vars(args).items()) if k != "url"}
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def generate_mnist1d(num_samples: int) -> dict[str, np.ndarray]:
    """Generate MNIST-1D with the package's default arguments (seed 42) and this size.

    Contract: calls ``mnist1d.data.make_dataset`` and restores the global ``random`` and
    ``np.random`` states it reseeds, so callers see no side effect.

    Args:
        num_samples: total samples before the package's 80/20 split (a multiple of 10
            is used; ``make_dataset`` draws ``num_samples // 10`` per class).

    Returns:
        ``x_train, y_train, x_test, y_test``: float32 ``(N, 40)`` and int64 ``(N,)``.
    """
    from mnist1d.data import make_dataset

    args = _dataset_args(num_samples)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x_train": np.ascontiguousarray(data["x"], dtype=np.float32),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.ascontiguousarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read_cache(path: Path, num_samples: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if the file is absent, unreadable or inconsistent."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in _KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a corrupt cache is regenerated, not an error
    total = len(arrays["x_train"]) + len(arrays["x_test"])
    ok = (
        total == num_samples // 10 * 10
        and arrays["x_train"].ndim == 2
        and arrays["x_train"].shape[1:] == arrays["x_test"].shape[1:]
        and len(arrays["x_train"]) == len(arrays["y_train"])
        and len(arrays["x_test"]) == len(arrays["y_test"])
    )
    return arrays if ok else None


_MAX_SAMPLES = 10_000_000  # 1.6 GB of float32 signals; generation takes hours past this


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: temp file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    except OSError:
        return  # an unwritable cache only costs regeneration next time
    try:
        with os.fdopen(fd, "wb") as handle:
            # numpy >= 2.1's stub checks **kwds against `allow_pickle: bool`; passing
            # allow_pickle explicitly would instead save an array of that name on numpy 1.26
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_mnist1d(*, cache_dir: Path, num_samples: int = 20000) -> dict:
    """Load MNIST-1D of ``num_samples`` samples, from the cache or freshly generated.

    Contract: the arrays equal :func:`generate_mnist1d` ``(num_samples)``; they are read
    from ``cache_dir/mnist1d/mnist1d-n{num_samples}-{args hash}.npz`` when that file is
    valid, else generated and written there atomically.

    Args:
        cache_dir: the trainwell cache folder.
        num_samples: total samples (default 20,000: 16,000 train, 4,000 test).

    Returns:
        Raw splits for :mod:`trainwell.data.sources`; ``info["cache"]`` is the file and
        ``info["from_cache"]`` whether it was read rather than generated.

    Raises:
        UserError: ``num_samples`` not an integer >= 100.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise UserError(f"num_samples: must be an integer, got {num_samples!r}; e.g. 20000")
    if num_samples < _MIN_SAMPLES:
        raise UserError(
            f"num_samples: must be >= {_MIN_SAMPLES} for mnist1d, got {num_samples}"
        )
    if num_samples > _MAX_SAMPLES:
        raise UserError(
            f"num_samples: {num_samples} past the limit of {_MAX_SAMPLES} for mnist1d "
            f"(40 float32 values each: {num_samples * 160:,} bytes)"
        )
    args = _dataset_args(num_samples)
    path = Path(cache_dir) / "mnist1d" / f"mnist1d-n{num_samples}-{_args_key(args)}.npz"
    arrays = _read_cache(path, num_samples)
    from_cache = arrays is not None
    if arrays is None:
        arrays = generate_mnist1d(num_samples)
        _write_cache(path, arrays)
    return {
        **arrays,
        "task": "classification",
        "num_classes": 10,
        "info": {"cache": str(path), "from_cache": from_cache, "generator_seed": 42},
    }
