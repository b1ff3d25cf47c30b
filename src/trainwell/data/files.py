"""Readers for data files in standard formats: IDX (the MNIST layout) and NumPy ``.npz``.

IDX format (LeCun et al., "THE MNIST DATABASE"): a 4-byte magic number — two zero bytes,
a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64) and the number of dimensions ``ndim`` — then ``ndim`` big-endian int32
sizes, then the values in C order, big-endian. The readers here parse it with NumPy,
validate every count against the header, and turn each problem into a one-line
:class:`~trainwell.errors.UserError` that names the file and the fix.

Loaders return the raw-split dictionary that :mod:`trainwell.data.sources` finishes
(validation split, standardization, tensors).
"""

from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError
from .npy import GZIP_MAX_RATIO as _GZIP_MAX_RATIO
from .npy import MAX_DATA_BYTES, read_npz

__all__ = ["read_idx", "load_idx", "load_npz", "IDX_NAMES", "MAX_DATA_BYTES"]

# type code -> big-endian NumPy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four files of an MNIST / Fashion-MNIST folder, each optionally with ".gz".
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_EXPECTED = ", ".join(IDX_NAMES.values())
_NUM_CLASSES = 10  # MNIST and Fashion-MNIST both have labels 0..9


_MAX_CLASSES = 65_536  # class labels past this are corrupt data, not a task


def _idx_error(path: Path, what: str) -> UserError:
    return UserError(f"source: file {path} {what}; re-download it")


class _Reader(Protocol):
    """An open binary file or gzip stream."""

    def read(self, size: int, /) -> bytes: ...


def _read_exact(handle: _Reader, n: int) -> bytes:
    """Up to ``n`` bytes; gzip streams return short reads, so loop until EOF or ``n``."""
    parts, got = [], 0
    while got < n:
        chunk = handle.read(min(n - got, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into a NumPy array.

    Contract: bytes 0-1 are zero, byte 2 the type code, byte 3 ``ndim``; then ``ndim``
    big-endian int32 sizes; then exactly ``prod(sizes) * itemsize`` data bytes. The header
    is checked against the file's real size (or, for ``.gz``, against what the compressed
    size can inflate to) before the data are read, and a ``.gz`` file is inflated as a
    stream that stops one byte past the size the header promises.

    Args:
        path: the file; a ``.gz`` suffix means gzip.

    Returns:
        The array in native byte order with shape ``sizes``.

    Raises:
        UserError: bad magic number, unknown type code, negative or absurd sizes,
            truncated or overlong data, a damaged gzip stream.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            return _parse_idx(path, handle, size, path.suffix == ".gz")
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(
            f"source: cannot read {path} ({exc}); the file is damaged or not gzip — "
            "re-download it"
        ) from exc


def _parse_idx(path: Path, handle: _Reader, size: int, gz: bool) -> np.ndarray:
    raw = _read_exact(handle, 4)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        head = raw[:4].hex() or "empty"
        raise UserError(
            f"source: {path} is not an IDX file (magic bytes {head}, expected 0000 "
            "then a type code such as 08 and the number of dimensions); use the original "
            "MNIST-format file"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    dim_bytes = _read_exact(handle, 4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise _idx_error(path, f"is truncated (expected at least {header} header bytes, found "
                               f"{4 + len(dim_bytes)})")
    dims = tuple(int(d) for d in np.frombuffer(dim_bytes, dtype=">i4"))
    if any(d < 0 for d in dims):
        raise _idx_error(path, f"has a negative size in its header {dims}")
    count = math.prod(dims)  # a Python int: no overflow whatever the header says
    nbytes = count * dtype.itemsize
    if count * 4 > MAX_DATA_BYTES:  # each value becomes at least a float32
        raise _idx_error(path, f"claims {count:,} values of shape {dims}, past the limit of "
                               f"{MAX_DATA_BYTES // 4:,}")
    expected = header + nbytes
    if not gz and size != expected:
        what = "is truncated" if size < expected else "has trailing data"
        raise _idx_error(path, f"{what} (expected {expected} bytes, found {size})")
    if gz and expected > size * _GZIP_MAX_RATIO + (1 << 16):
        raise _idx_error(path, f"claims {expected:,} bytes, more than its {size:,} compressed "
                               "bytes can hold")
    body = _read_exact(handle, nbytes + 1)  # one byte more tells trailing data
    if len(body) != nbytes:
        found = header + len(body)
        what = "is truncated" if len(body) < nbytes else "has trailing data"
        shown = f"{found}" if len(body) < nbytes else "more"
        raise _idx_error(path, f"{what} (expected {expected} bytes, found {shown})")
    data = np.frombuffer(body, dtype=dtype).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"source: idx folder {folder} has no {stem} (or {stem}.gz); expected the "
        f"files {_IDX_EXPECTED}, each optionally .gz"
    )


def _idx_pair(folder: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64, validated."""
    images_path = _find_idx(folder, images_stem)
    labels_path = _find_idx(folder, labels_stem)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError(
            f"source: {images_path} holds {images.dtype} data of shape "
            f"{images.shape}; expected unsigned-byte images (N, rows, cols)"
        )
    if labels.ndim != 1:
        raise UserError(
            f"source: {labels_path} holds data of shape {labels.shape}; expected "
            "one label per image (N,)"
        )
    if len(images) != len(labels):
        raise UserError(
            f"source: {images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels; use matching files from the same release"
        )
    if labels.dtype.kind == "f":  # astype(int64) would turn a label of 1.5 into 1
        raise UserError(
            f"source: {labels_path} holds {labels.dtype} labels; IDX class labels are "
            "unsigned bytes 0..9 — use the original label file"
        )
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= _NUM_CLASSES)
    if bad.any():
        raise UserError(
            f"source: {labels_path} has label {int(labels[bad][0])} outside 0..9; "
            "the file is corrupt or not MNIST labels — re-download it"
        )
    x = (images.astype(np.float32) / 255.0)[:, None]  # (N, 1, H, W), pixel 255 -> 1.0
    return np.ascontiguousarray(x), labels


def load_idx(path: str) -> dict:
    """Load an MNIST-layout folder of IDX files (the ``idx:PATH`` source).

    Contract: ``path`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
    Images become float32 ``(N, 1, H, W)`` with x = byte / 255; labels int64 in 0..9.

    Args:
        path: the folder.

    Returns:
        Raw splits: ``x_train, y_train, x_test, y_test``, task, num_classes = 10, info.

    Raises:
        UserError: missing folder or file, bad magic, truncated data, count mismatch,
            label outside 0..9.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"source: idx folder {folder} does not exist; point idx:PATH at a folder "
            f"holding {_IDX_EXPECTED} (each optionally .gz)"
        )
    x_train, y_train = _idx_pair(folder, IDX_NAMES["train_images"], IDX_NAMES["train_labels"])
    x_test, y_test = _idx_pair(folder, IDX_NAMES["test_images"], IDX_NAMES["test_labels"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(
            f"source: idx folder {folder} has train images {x_train.shape[2:]} but "
            f"test images {x_test.shape[2:]}; use files from the same release"
        )
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "task": "classification",
        "num_classes": _NUM_CLASSES,
        "info": {"path": str(folder)},
    }


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_EXPECTED = "x_train, y_train, x_test, y_test (optionally x_val, y_val), or x, y"


def load_npz(path: str, *, task: str | None = None) -> dict:
    """Load arrays from a NumPy ``.npz`` file (the ``npz:PATH`` source).

    Contract: keys ``x_train, y_train, x_test, y_test`` (plus optional ``x_val, y_val``),
    or ``x, y`` (then split 80/20 by the seeded permutation of :func:`load`). Object
    arrays are refused (``allow_pickle=False``). ``uint8`` features are scaled by 1/255;
    other numeric features are cast to float32 as they are.

    Task: ``task="regression"``, or ``task=None`` with a floating ``y``, gives regression
    (``y`` float32, 1-D ``y`` becomes ``(N, 1)``); otherwise labels must be integers
    ``0..K-1`` and ``num_classes = K = max label + 1``.

    Args:
        path: the ``.npz`` file.
        task: ``"classification"``, ``"regression"`` or ``None`` (infer from ``y``).

    Returns:
        Raw splits for :mod:`trainwell.data.sources`.

    Raises:
        UserError: missing file or keys, pickled objects, length mismatch, non-integer or
            negative labels, feature shapes that differ between splits.
    """
    file = Path(path).expanduser()
    if task not in (None, "classification", "regression"):
        raise UserError(f"task: unknown task {task!r}; use 'classification' or 'regression'")
    if not file.is_file():
        raise UserError(f"source: npz file {file} does not exist; check the path")
    if not zipfile.is_zipfile(file):  # np.load would read other files as .npy or pickle
        raise UserError(
            f"source: {file} is not a readable .npz file (not a zip archive); re-create "
            "it with np.savez"
        )
    try:
        arrays = read_npz(file)
    except UserError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error, RuntimeError,
            NotImplementedError) as exc:  # zipfile's whole range of "this archive is bad"
        raise UserError(
            f"source: {file} is not a readable .npz file ({type(exc).__name__}: {exc}); "
            "re-create it with np.savez"
        ) from exc
    keys = set(arrays)
    if set(_SPLIT_KEYS) <= keys:
        names = ["train", "test"] + (["val"] if "x_val" in keys or "y_val" in keys else [])
    elif {"x", "y"} <= keys:
        names = [""]
    else:
        wanted = _SPLIT_KEYS if keys & set(_SPLIT_KEYS) or not keys & {"x", "y"} else ("x", "y")
        missing = ", ".join(k for k in wanted if k not in keys)
        raise UserError(
            f"source: npz file {file} lacks keys {missing}; expected {_NPZ_EXPECTED} "
            f"(found {', '.join(sorted(keys)) or 'no arrays'})"
        )
    raw: dict = {"info": {"path": str(file)}}
    for name in names:
        suffix = f"_{name}" if name else ""
        for key in (f"x{suffix}", f"y{suffix}"):
            if key not in arrays:
                raise UserError(
                    f"source: npz file {file} has {'x' if key[0] == 'y' else 'y'}{suffix} "
                    f"but lacks {key}; save both or neither"
                )
        x, y = arrays[f"x{suffix}"], arrays[f"y{suffix}"]
        if x.ndim < 2 or len(x) != len(y):
            raise UserError(
                f"source: npz file {file}: x{suffix} has shape {x.shape} and y{suffix} "
                f"{y.shape}; x needs shape (N, features...) and y the same N"
            )
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise UserError(
                f"source: npz file {file}: x{suffix} has dtype {x.dtype}; save numbers"
            )
        raw[f"x{suffix}"] = (x.astype(np.float32) / 255.0) if x.dtype == np.uint8 else x
        raw[f"y{suffix}"] = y
    feature_shapes = {raw[k].shape[1:] for k in raw if k.startswith("x")}
    if len(feature_shapes) > 1:
        raise UserError(
            f"source: npz file {file} has different feature shapes across splits "
            f"{sorted(feature_shapes)}; all splits need the same shape"
        )
    y_all = [raw[k] for k in raw if k.startswith("y")]
    is_float = any(np.issubdtype(y.dtype, np.floating) for y in y_all)
    raw["task"] = task or ("regression" if is_float else "classification")
    if raw["task"] == "regression":
        for k in [k for k in raw if k.startswith("y")]:
            y = raw[k].astype(np.float32)
            if y.ndim > 2:
                raise UserError(
                    f"source: npz file {file}: {k} has shape {y.shape}; regression "
                    "targets need shape (N,) or (N, T)"
                )
            raw[k] = y[:, None] if y.ndim == 1 else y
        raw["num_classes"] = None
        return raw
    for k in [k for k in raw if k.startswith("y")]:
        raw[k] = _integer_labels(raw[k], f"npz file {file} ({k})")
    raw["num_classes"] = int(max(int(raw[k].max(initial=-1)) for k in raw if k.startswith("y"))) + 1
    return raw


def _integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64 ``(N,)``; refuse fractional, non-numeric or negative values."""
    if y.ndim == 2 and y.shape[1] == 1:  # a column of labels
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(
            f"source: {where} labels have shape {y.shape}; classification needs one "
            "integer label per sample (N,)"
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise UserError(
            f"source: {where} labels have dtype {y.dtype}; save integer class indices"
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise UserError(
                f"source: {where} labels are not whole numbers; save integer class "
                "indices 0..K-1, or set data.task=regression"
            )
    if y.size and y.max() >= _MAX_CLASSES:  # before the cast: 2**64-1 would wrap to -1
        raise UserError(
            f"source: {where} has label {y.max()} out of range; labels must be "
            f"integers 0..K-1 with K at most {_MAX_CLASSES}"
        )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise UserError(
            f"source: {where} has label {int(y.min())} out of range; labels must be "
            "integers 0..K-1"
        )
    return y
