"""Checked reading of NumPy ``.npz`` archives: every header against the real size first.

``np.load`` hands back a member that is not ``.npy`` as raw bytes, and believes a header
that promises 5e11 floats until it runs out of memory. :func:`read_npz` reads the zip
directory and each ``.npy`` header, compares them with the member's real size and with
:data:`MAX_DATA_BYTES`, and only then reads the data (never a pickle).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["read_npz", "MAX_DATA_BYTES", "GZIP_MAX_RATIO"]

# What one data file may hold once decoded (features become float32: 4 bytes a value).
MAX_DATA_BYTES = 8 << 30
# Deflate cannot inflate by more than 1032:1, so a gzip stream or zip member whose header
# promises more is lying, and is refused before a byte is inflated.
GZIP_MAX_RATIO = 1032


def read_npz(file: Path) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` archive, each header checked before its data are read.

    ``np.load`` returns a member that is not ``.npy`` as raw bytes and believes a header
    that promises 5e11 floats; here each member must be a ``.npy`` array whose header
    matches the member's real size, with no objects, within :data:`MAX_DATA_BYTES`.
    """
    arrays: dict[str, np.ndarray] = {}
    total = 0
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise UserError(
                    f"source: npz file {file} holds {name[:80]!r}, which is not a .npy "
                    "array; save only arrays with np.savez"
                )
            if info.file_size > info.compress_size * GZIP_MAX_RATIO + (1 << 16):
                raise UserError(
                    f"source: npz file {file}: member {name[:80]!r} claims "
                    f"{info.file_size:,} bytes from {info.compress_size:,} compressed; "
                    "the archive is damaged — re-create it with np.savez"
                )
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                header = member.tell()
            if dtype.hasobject:
                raise UserError(
                    f"source: npz file {file} holds object (pickled) arrays, which are "
                    "refused for safety; save plain numeric arrays with np.savez"
                )
            nbytes = math.prod(shape) * dtype.itemsize
            total += nbytes
            if header + nbytes != info.file_size or total > MAX_DATA_BYTES:
                why = (f"but the member holds {info.file_size - header:,}"
                       if header + nbytes != info.file_size
                       else f"past the limit of {MAX_DATA_BYTES:,} bytes")
                raise UserError(
                    f"source: npz file {file}: {name[:80]!r} claims shape {shape[:4]} of "
                    f"{dtype} ({nbytes:,} bytes), {why}; re-create it with np.savez"
                )
            with archive.open(info) as member:
                arrays[name[: -len(".npy")]] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays
