"""The source registry and :func:`load`, which turns a source name into a :class:`Dataset`.

A source is a loader function registered in :data:`SOURCES` under its name. A loader
returns raw NumPy splits as a dict:

- ``x_train, y_train, x_test, y_test`` (optionally ``x_val, y_val``), or ``x, y`` with an
  optional ``test_fraction`` (default 0.2), split here by a seeded permutation;
- ``task`` (``"classification"`` or ``"regression"``), ``num_classes`` (``None`` means
  max label + 1) and ``info`` (facts for the run's summary).

:func:`load` does the rest the same way for every source: the seeded test and validation
hold-outs, label checks, standardization from the training split only, and float32 /
int64 tensors. Adding a source is one function and one registry line. A loader's
keyword-only parameters are its options; ``seed``, ``cache_dir`` and ``download`` are
passed when it declares them, and a first parameter named ``path`` marks a ``name:PATH``
source.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from . import download as _download
from .cifar import load_cifar10
from .dataset import Dataset, Split, standardize
from .files import load_idx, load_npz
from .mnist1d import load_mnist1d
from .synthetic import load_synthetic

__all__ = ["SOURCES", "load", "cache_dir"]

cache_dir = _download.cache_dir

_EPS = 1e-8  # added to std, as in dataset.standardize
_TINY_STD = 1e-6  # a feature/channel with smaller train std is constant: centred, not scaled


def _load_digits() -> dict:
    """scikit-learn's bundled 8×8 digits (1,797 samples, 64 features 0..16, 10 classes)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return {"x": x, "y": y, "task": "classification", "num_classes": 10, "info": {}}


def _load_remote_idx(name: str, *, cache_dir: Path, download: bool) -> dict:
    """MNIST / Fashion-MNIST from the cache, downloaded with SHA-256 checks on request."""
    return load_idx(str(_download.fetch(name, cache_dir, download=download)))


SOURCES: dict[str, Callable[..., dict]] = {
    "mnist1d": load_mnist1d,
    "digits": _load_digits,
    "synthetic": load_synthetic,
    "idx": load_idx,
    "npz": load_npz,
    "cifar10": load_cifar10,
    "mnist": partial(_load_remote_idx, "mnist"),
    "fashion-mnist": partial(_load_remote_idx, "fashion-mnist"),
}

_COMMON = ("seed", "cache_dir", "download")
_SOURCE_LIST = "mnist1d, digits, synthetic, idx:PATH, npz:PATH, cifar10:PATH, mnist, fashion-mnist"


def _signature(loader: Callable[..., dict]) -> tuple[bool, list[str], set[str]]:
    """(takes a path, option names, common arguments it declares)."""
    params = list(inspect.signature(loader).parameters.values())
    takes_path = bool(params) and params[0].name == "path"
    keyword = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return (
        takes_path,
        [k for k in keyword if k not in _COMMON],
        {k for k in keyword if k in _COMMON},
    )


def _perm_split(
    n: int, fraction: float, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(kept indices, held-out indices): the first round(n·fraction) of a seeded permutation."""
    order = torch.randperm(n, generator=generator).numpy()
    k = int(round(n * fraction))
    return order[k:], order[:k]


def _to_split(x: np.ndarray, y: np.ndarray, task: str) -> Split:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if task == "classification":
        return Split(xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:  # regression targets are (N, T)
        y = y[:, None]
    return Split(xt, torch.from_numpy(np.ascontiguousarray(y)))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(values: np.ndarray, key: str, where: str) -> None:
    """Refuse NaN, ±inf, and values that float32 would turn into inf.

    One NaN in a training row makes every row NaN after standardization and every step
    is then skipped: refuse it here, with the count and the first index to look at.
    """
    if values.dtype.kind not in "fc":
        return  # integers and booleans are always finite
    bad = ~np.isfinite(values)
    if values.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            bad |= np.abs(values) > _FLOAT32_MAX
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"source: {where}: {key} has {count} non-finite value{'s' * (count > 1)} "
            f"(NaN, inf, or beyond float32), the first at index {first}; remove or impute them"
        )


def _standardize_splits(
    train: torch.Tensor, others: list[torch.Tensor]
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Standardize by train statistics; tabular per feature, images (≥3-D) per channel.

    z = (x − μ_train) / (σ_train + 1e-8). Per channel, μ and σ pool axis 0 and every axis
    after the channel axis 1. A feature or channel whose train σ < 1e-6 is constant in
    training: it is only centred (divided by 1), so a differing test value stays finite.
    """
    if train.ndim == 2:
        *outs, mean, std = standardize(train, *others, eps=_EPS)
        const = std < _TINY_STD
        if bool(const.any()):  # undo the 1/1e-8 blow-up on constant features
            outs = [torch.where(const, x - mean, z) for x, z in zip([train, *others], outs)]
        return outs, mean, std
    dims = [0, *range(2, train.ndim)]
    mean = train.mean(dim=dims)
    std = train.std(dim=dims)
    denom = torch.where(std < _TINY_STD, torch.ones_like(std), std + _EPS)
    shape = (1, -1) + (1,) * (train.ndim - 2)
    outs = [(x - mean.view(shape)) / denom.view(shape) for x in [train, *others]]
    return outs, mean, std


def _check_val_fraction(val_fraction: object) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise UserError(f"val_fraction: must be a number in [0, 0.9], got {val_fraction!r}")
    if not 0 <= val_fraction <= 0.9:
        raise UserError(f"val_fraction: must be in [0, 0.9], got {val_fraction}")
    return float(val_fraction)


def load(
    source: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    standardize: bool = True,
    cache_dir: str | Path | None = None,
    download: bool = False,
    **options: object,
) -> Dataset:
    """Load a dataset by source name, split it, standardize it, and return tensors.

    Sources: ``mnist1d``, ``digits``, ``synthetic``, ``idx:PATH``, ``npz:PATH``,
    ``cifar10:PATH``, ``mnist``, ``fashion-mnist`` (see :data:`SOURCES`).

    Contract:
        - Sources without a test split lose round(N·test_fraction) samples (0.2 unless
          the source says otherwise) to test, by ``torch.randperm`` seeded with ``seed``.
        - Without a given validation split, round(N_train·val_fraction) training samples
          are held out for validation by the same seeded generator.
        - With ``standardize``: z = (x − μ_train)/(σ_train + 1e-8) from the training split
          only; per feature for 2-D x, per channel (axis 1) for image-like x. Constant
          features/channels are only centred. Regression targets are not standardized.
          ``info["mean"]``, ``info["std"]`` record the statistics.
        - Features float32, contiguous; classification labels int64 in 0..K−1.

    Args:
        source: a source name, or ``name:PATH`` for file sources.
        seed: seeds the hold-out permutations and synthetic generation.
        val_fraction: share of the training data held out for validation, in [0, 0.9].
        standardize: whether to standardize features.
        cache_dir: cache folder for generated and downloaded data; default
            :func:`cache_dir`.
        download: allow downloads for ``mnist`` / ``fashion-mnist``.
        **options: source options, e.g. ``num_samples`` for ``mnist1d``.

    Returns:
        A :class:`Dataset` named after the source.

    Raises:
        UserError: unknown source or option, bad ``val_fraction``, missing PATH, or any
            problem the loader finds in its data.
    """
    if not isinstance(source, str) or not source:
        raise UserError(
            f"source: expected a source name, got {source!r}; use one of {_SOURCE_LIST}"
        )
    name, sep, path = source.partition(":")
    loader = SOURCES.get(name)
    if loader is None:
        raise UserError(f"source: unknown source {source!r}; use one of {_SOURCE_LIST}")
    takes_path, option_names, common = _signature(loader)
    if takes_path and not path:
        raise UserError(
            f"source: {name} needs a path, e.g. {name}:/data/{name}; got {source!r}"
        )
    if not takes_path and sep:
        raise UserError(f"source: {name} takes no path, got {source!r}; use {name!r}")
    for key in options:
        if key not in option_names:
            valid = ", ".join(option_names) or "none"
            raise UserError(
                f"data.{key}: unknown option for source {name!r}; valid options: {valid}"
            )
    val_fraction = _check_val_fraction(val_fraction)
    root = Path(cache_dir).expanduser() if cache_dir is not None else _download.cache_dir()
    given = {"seed": seed, "download": download, "cache_dir": root}
    kwargs = {**{k: given[k] for k in common}, **options}
    raw = loader(path, **kwargs) if takes_path else loader(**kwargs)
    return _finish(raw, name, seed=seed, val_fraction=val_fraction, do_standardize=standardize)


def _finish(
    raw: dict, name: str, *, seed: int, val_fraction: float, do_standardize: bool
) -> Dataset:
    """Hold out test/val, check labels, standardize, and build the :class:`Dataset`."""
    task = raw["task"]
    where = raw.get("info", {}).get("path", name)
    for key in sorted(k for k in raw if k[:1] == "x" or (k[:1] == "y" and task != "classification")):
        _check_finite(np.asarray(raw[key]), key, where)
    generator = torch.Generator().manual_seed(int(seed))
    if "x" in raw:
        keep, held = _perm_split(len(raw["x"]), raw.get("test_fraction", 0.2), generator)
        x, y = raw["x"], raw["y"]
        raw = {**raw, "x_train": x[keep], "y_train": y[keep], "x_test": x[held], "y_test": y[held]}
    if "x_val" not in raw:
        keep, held = _perm_split(len(raw["x_train"]), val_fraction, generator)
        x_tr, y_tr = raw["x_train"], raw["y_train"]
        raw = {
            **raw,
            "x_train": x_tr[keep],
            "y_train": y_tr[keep],
            "x_val": x_tr[held],
            "y_val": y_tr[held],
        }
    if len(raw["x_train"]) == 0:
        raise UserError(
            f"source: {name} leaves no training samples; use more data or a smaller val_fraction"
        )
    num_classes = raw.get("num_classes")
    if task == "classification":
        labels = [raw[f"y_{s}"] for s in ("train", "val", "test")]
        found = max(int(y.max(initial=-1)) for y in labels)
        if num_classes is None:
            num_classes = found + 1
        low = min(int(y.min(initial=0)) for y in labels)
        if low < 0 or found >= num_classes:
            bad = low if low < 0 else found
            raise UserError(
                f"source: {name} has label {bad} out of range 0..{num_classes - 1}; "
                "labels must be class indices 0..K-1"
            )
    splits = [_to_split(raw[f"x_{s}"], raw[f"y_{s}"], task) for s in ("train", "val", "test")]
    sizes = {s: len(p) for s, p in zip(("train", "val", "test"), splits)}
    info = {**raw.get("info", {}), "source": name, "seed": seed, "sizes": sizes}
    if do_standardize:
        (tr, va, te), mean, std = _standardize_splits(splits[0].x, [s.x for s in splits[1:]])
        if not all(bool(torch.isfinite(z).all()) for z in (tr, va, te, mean, std)):
            raise UserError(
                f"source: {where}: features as large as {float(splits[0].x.abs().max()):.3g} "
                "overflow float32 when standardized; rescale the data"
            )
        splits = [Split(z.contiguous(), s.y) for z, s in zip((tr, va, te), splits)]
        info["standardized"] = "per_feature" if tr.ndim == 2 else "per_channel"
        info["mean"], info["std"] = mean.tolist(), std.tolist()
    if task != "classification":
        num_classes = None
    train, val, test = splits
    return Dataset(train, val, test, task=task, num_classes=num_classes, name=name, info=info)
