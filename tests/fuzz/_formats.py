"""Writers of small valid data files in their real formats, for the fuzz and hardening tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array: np.ndarray, code: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    """IDX encoding: 0, 0, type code, ndim, big-endian int32 dims (or ``dims``), data."""
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}i", *dims)
    return header + array.astype(_IDX_DTYPES[code]).tobytes()


def idx_folder(folder: Path, *, n_train: int = 40, n_test: int = 20, side: int = 6,
               gz: bool = False) -> dict[str, bytes]:
    """A tiny MNIST-layout folder; returns each file's (uncompressed) bytes by stem."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        IDX_STEMS[0]: idx_bytes(rng.integers(0, 256, (n_train, side, side), dtype=np.uint8)),
        IDX_STEMS[1]: idx_bytes(np.arange(n_train, dtype=np.uint8) % 10),
        IDX_STEMS[2]: idx_bytes(rng.integers(0, 256, (n_test, side, side), dtype=np.uint8)),
        IDX_STEMS[3]: idx_bytes(np.arange(n_test, dtype=np.uint8) % 10),
    }
    for stem, data in contents.items():
        write_file(folder / stem, data, gz=gz)
    return contents


def write_file(path: Path, data: bytes, *, gz: bool = False) -> Path:
    """Write ``data`` to ``path`` (``path.gz`` gzip-compressed when ``gz``)."""
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def npz_arrays(n: int = 60, features: int = 4, classes: int = 3) -> dict[str, np.ndarray]:
    """Arrays of a tiny classification set in the ``x, y`` layout."""
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((n, features)).astype(np.float32),
            "y": (np.arange(n) % classes).astype(np.int64)}


def cifar_bin_folder(folder: Path, n: int = 4) -> None:
    """The six batches of the CIFAR-10 binary release, ``n`` records each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(n) % 10
        (folder / f"{name}.bin").write_bytes(records.tobytes())
