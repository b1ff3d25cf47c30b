"""CIFAR-10 from a local folder: the binary release or the python-pickle release.

Binary release (``cifar-10-batches-bin``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
``test_batch.bin``, each a run of 3,073-byte records — one label byte (0..9), then 3,072
pixel bytes: the 1,024 red values of a 32×32 image in row-major order, then green, blue.

Python release (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` and
``test_batch``, each a pickled dict with ``b"data"`` (a uint8 array ``(N, 3072)`` in the
same channel-major order) and ``b"labels"`` (a list of ints). A pickle can run arbitrary
code when loaded, so these are read by :class:`SafeUnpickler`, which resolves only the
NumPy array-reconstruction globals and refuses every other global with a
:class:`~trainwell.errors.UserError` before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["SafeUnpickler", "safe_unpickle", "load_cifar10"]

_RECORD = 1 + 3 * 32 * 32  # bytes per binary record: label + pixels
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = "test_batch"
_NUM_CLASSES = 10

# (module, name) pairs that rebuild ndarrays and dtypes and nothing else. numpy 2 moved
# numpy.core to numpy._core; pickles written by either name must load under both.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of contiguous arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol <= 2 pickles written by Python 3 store
    bytes as ``_codecs.encode(text, "latin1")``. Only that exact use is allowed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UserError(
            f"source: a pickle asks for _codecs.encode with {encoding!r}, which a CIFAR-10 "
            "batch never needs; refusing to unpickle it"
        )
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays, dicts, lists, bytes and numbers only.

    Contract: :meth:`find_class` returns the real object only for the NumPy
    array-reconstruction globals (``_reconstruct``, ``_frombuffer``, ``ndarray``,
    ``dtype``) and a latin-1-only stand-in for ``_codecs.encode`` (how Python 3 writes
    bytes at protocol <= 2); any other global — ``os.system``, ``builtins.eval``, ... — raises
    :class:`~trainwell.errors.UserError` before it can be called. Persistent ids are
    refused by the base class.
    """

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        # encoding="bytes" keeps the python-2 str keys of the real files as bytes.
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        """Resolve ``module.name`` if it is an allowed NumPy global, else refuse.

        Raises:
            UserError: for any global outside the allow-list.
        """
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _ALLOWED_GLOBALS:
            # Import through numpy._core where it exists: numpy 2 warns on numpy.core.
            if module.startswith("numpy.core") and hasattr(np, "_core"):
                module = "numpy._core" + module[len("numpy.core") :]
            return super().find_class(module, name)
        raise UserError(
            f"source: {self._source} asks to load {module}.{name}, which a CIFAR-10 "
            "batch never needs; refusing to unpickle it — use the original files, or the "
            "binary release (*.bin)"
        )


def safe_unpickle(data: bytes, *, source: str) -> object:
    """Unpickle ``data`` with :class:`SafeUnpickler`; any failure becomes a UserError.

    Args:
        data: the pickle bytes.
        source: the file name, for messages.

    Raises:
        UserError: a refused global or a malformed pickle.
    """
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except UserError:
        raise
    except Exception as exc:  # any malformed pickle: report it as bad input, one line
        raise UserError(
            f"source: {source} is not a readable CIFAR-10 python batch ({type(exc).__name__}: "
            f"{exc}); re-download it"
        ) from exc


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= _NUM_CLASSES)
    if bad.any():
        raise UserError(
            f"source: {path} has label {int(labels[bad][0])} outside 0..9; the file "
            "is corrupt — re-download it"
        )
    return labels


_MAX_BATCH_BYTES = 1 << 30  # a real batch file is 30 MB; read nothing past this


def _read_capped(path: Path) -> bytes:
    """The file's bytes, after checking its real size against :data:`_MAX_BATCH_BYTES`."""
    size = path.stat().st_size
    if size > _MAX_BATCH_BYTES:
        raise UserError(
            f"source: {path} has {size:,} bytes, past the limit of {_MAX_BATCH_BYTES:,} "
            "for one CIFAR-10 batch (30 MB); this is not a CIFAR-10 file"
        )
    return path.read_bytes()


def _read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_capped(path)
    if len(raw) == 0 or len(raw) % _RECORD:
        raise UserError(
            f"source: {path} has {len(raw)} bytes, not a positive multiple of "
            f"{_RECORD} (1 label byte + 3072 pixel bytes per image); the file is truncated "
            "— re-download it"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), _check_labels(records[:, 0], path)


def _read_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(_read_capped(path), source=str(path))
    if not isinstance(batch, dict):
        raise UserError(
            f"source: {path} holds a {type(batch).__name__}, expected a dict with "
            "b'data' and b'labels'; re-download it"
        )
    # The real files use bytes keys; a re-pickled copy may use str keys.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise UserError(
            f"source: {path} lacks b'data' (uint8 array) or b'labels'; re-download it"
        )
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _RECORD - 1:
        raise UserError(
            f"source: {path} holds data {data.dtype} {data.shape}; expected uint8 "
            "(N, 3072); re-download it"
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(
            f"source: {path} has {len(data)} images but labels of shape "
            f"{labels.shape} ({labels.dtype}); re-download it"
        )
    return data.reshape(-1, 3, 32, 32), _check_labels(labels, path)


def _resolve(folder: Path) -> tuple[Path, str]:
    """The folder that holds the batches and their flavour, ``"bin"`` or ``"py"``."""
    for candidate in (folder, folder / "cifar-10-batches-bin", folder / "cifar-10-batches-py"):
        if (candidate / f"{_TEST}.bin").is_file():
            return candidate, "bin"
        if (candidate / _TEST).is_file():
            return candidate, "py"
    raise UserError(
        f"source: cifar10 folder {folder} has no test_batch.bin or test_batch; expected "
        "data_batch_1..5 and test_batch (python release) or the same names with .bin "
        "(binary release)"
    )


def load_cifar10(path: str) -> dict:
    """Load CIFAR-10 from a local folder (the ``cifar10:PATH`` source).

    Contract: ``path`` (or its ``cifar-10-batches-bin`` / ``cifar-10-batches-py``
    subfolder) holds the five training batches and the test batch of either release.
    Images become float32 ``(N, 3, 32, 32)`` with x = byte / 255; labels int64 in 0..9.

    Args:
        path: the folder.

    Returns:
        Raw splits for :mod:`trainwell.data.sources` (train = batches 1-5).

    Raises:
        UserError: missing folder or batch, a size that is not a multiple of 3,073 bytes,
            a refused or malformed pickle, a label outside 0..9.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"source: cifar10 folder {folder} does not exist; point cifar10:PATH at the "
            "extracted cifar-10-batches-bin or cifar-10-batches-py folder"
        )
    folder, flavour = _resolve(folder)
    ext, reader = (".bin", _read_bin) if flavour == "bin" else ("", _read_py)
    parts = []
    for name in [*_TRAIN, _TEST]:
        file = folder / f"{name}{ext}"
        if not file.is_file():
            raise UserError(
                f"source: cifar10 folder {folder} has no {file.name}; expected "
                f"{', '.join(n + ext for n in _TRAIN)} and {_TEST}{ext}"
            )
        parts.append(reader(file))
    x_train = np.concatenate([p[0] for p in parts[:-1]])
    y_train = np.concatenate([p[1] for p in parts[:-1]])
    x_test, y_test = parts[-1]

    def scale(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.astype(np.float32) / 255.0)  # pixel 255 -> 1.0

    return {
        "x_train": scale(x_train),
        "y_train": y_train,
        "x_test": scale(x_test),
        "y_test": y_test,
        "task": "classification",
        "num_classes": _NUM_CLASSES,
        "info": {"path": str(folder), "format": flavour},
    }
