"""The user's cache folder and checksummed downloads of the MNIST-family IDX files.

A download never leaves a half-written or unverified file under its final name: each file
is streamed to a temporary file in the target folder while its SHA-256 is computed, and
only a file whose digest equals the pinned constant is renamed into place
(``os.replace`` is atomic on one file system). Tests point ``base_url`` at ``file://``
URLs of files they generate, so no test touches the network.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["cache_dir", "Remote", "REMOTES", "IDX_FILES", "fetch", "sha256_file"]

# The four files of the MNIST layout, gzip-compressed as the mirrors serve them.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class Remote:
    """Where a dataset's files live and what each must hash to.

    Attributes:
        base_url: folder URL; a file's URL is ``base_url + file name``.
        sha256: file name -> expected SHA-256 hex digest (lower case).
        size: file name -> size in bytes (informational, shown in messages).
    """

    base_url: str
    sha256: dict[str, str]
    size: dict[str, int]


# Checksums as published by torchvision's dataset definitions and TensorFlow Datasets'
# url_checksums for the same file names (see the module report); sizes in bytes.
REMOTES: dict[str, Remote] = {
    "mnist": Remote(
        base_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        size={
            "train-images-idx3-ubyte.gz": 9912422,
            "train-labels-idx1-ubyte.gz": 28881,
            "t10k-images-idx3-ubyte.gz": 1648877,
            "t10k-labels-idx1-ubyte.gz": 4542,
        },
    ),
    "fashion-mnist": Remote(
        # HTTP only at this endpoint; integrity comes from the pinned SHA-256, not TLS.
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        size={
            "train-images-idx3-ubyte.gz": 26421880,
            "train-labels-idx1-ubyte.gz": 29515,
            "t10k-images-idx3-ubyte.gz": 4422102,
            "t10k-labels-idx1-ubyte.gz": 5148,
        },
    ),
}

_CHUNK = 1 << 20  # bytes per read while streaming a download


def cache_dir() -> Path:
    """The folder where trainwell caches generated and downloaded data.

    Contract: ``$TRAINWELL_CACHE`` if set, else ``$XDG_CACHE_HOME/trainwell``, else
    ``~/.cache/trainwell``. The folder is not created here.

    Returns:
        The cache folder as an absolute-or-user-expanded :class:`~pathlib.Path`.
    """
    explicit = os.environ.get("TRAINWELL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "trainwell"
    return Path.home() / ".cache" / "trainwell"


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    name: str,
    root: Path,
    *,
    download: bool,
    remote: Remote | None = None,
    opener: Callable[..., AbstractContextManager[Any]] | None = None,
) -> Path:
    """Make sure ``root/name/`` holds every file of ``name``'s remote; return that folder.

    Files already present are used as they are (the IDX reader validates their
    structure). Missing files are downloaded only when ``download`` is true: each is
    streamed to a temporary file, its SHA-256 compared with the pinned value, and then
    renamed into place; a mismatch deletes the temporary file.

    Args:
        name: a key of :data:`REMOTES` (``"mnist"`` or ``"fashion-mnist"``).
        root: the cache folder (see :func:`cache_dir`).
        download: whether missing files may be downloaded.
        remote: override of ``REMOTES[name]`` (tests use ``file://`` URLs).
        opener: ``urlopen``-like callable ``opener(url, timeout=...)`` returning a
            readable binary response; default ``urllib.request.urlopen``.

    Returns:
        The folder holding the files.

    Raises:
        UserError: files missing and ``download`` false; a download failed; a checksum
            did not match.
    """
    remote = remote if remote is not None else REMOTES[name]
    folder = Path(root) / name
    missing = [f for f in remote.sha256 if not (folder / f).is_file()]
    if not missing:
        return folder
    if not download:
        raise UserError(
            f"source: {name} is not in the cache {folder}; run with --set "
            "data.download=true to download it (or point data.source at idx:PATH)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    open_url = opener if opener is not None else urllib.request.urlopen
    for file_name in missing:
        _download_one(
            remote.base_url + file_name, folder / file_name, remote.sha256[file_name], open_url
        )
    return folder


def _download_one(
    url: str, target: Path, expected: str, open_url: Callable[..., AbstractContextManager[Any]]
) -> None:
    """Stream ``url`` to a temp file beside ``target``, verify SHA-256, rename into place."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = open_url(url, timeout=60)
                with response as stream:
                    while chunk := stream.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise UserError(
                    f"source: could not download {url} ({exc}); check the network and "
                    f"retry, or place the file at {target} by hand"
                ) from exc
        found = digest.hexdigest()
        if found != expected:
            raise UserError(
                f"source: downloaded {target.name} from {url} has SHA-256 {found}, "
                f"expected {expected}; the download is corrupt or the mirror changed — "
                "retry, or place verified files in the cache by hand"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
