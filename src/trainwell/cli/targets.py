"""Your own model and data from a config: ``model.target`` / ``data.target``.

A target is ``"package.module:callable"``: an importable callable that trainwell calls with
the section's ``kwargs``. The model target returns an ``nn.Module``; the data target returns
a trainwell :class:`~trainwell.data.Dataset` (the fast in-memory path), or a pair/triple
``(train, val[, test])`` of torch ``Dataset``s or ``DataLoader``s. Modules are looked up on
``sys.path`` and in the config file's folder (the front puts it on the path), so a
``models.py`` beside the config works without installing anything.

Example (``my_pkg/models.py``)::

    def resnet18_cifar(num_classes: int = 10) -> nn.Module: ...

    [model]
    target = "my_pkg.models:resnet18_cifar"
    kwargs = { num_classes = 10 }
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.dataset import Dataset
from ..errors import UserError

__all__ = ["TorchData", "call_target", "load_target", "search_path", "to_run_data"]

_MAX_SEARCH_PATHS = 16  # config folders added to sys.path in one process (tests build many)


@dataclass(frozen=True)
class TorchData:
    """A user's torch data: training, validation and (optional) test sets or loaders."""

    train: Any
    val: Any
    test: Any = None
    name: str = "user data"


_added: list[str] = []


@contextmanager
def search_path(folder: Path | None) -> Iterator[None]:
    """Let targets import modules that sit beside the config file (for the duration)."""
    if folder is None:
        yield
        return
    entry = str(Path(folder).resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def load_target(spec: str, field: str) -> Callable[..., Any]:
    """The callable that ``spec`` (``"package.module:attr"``) names.

    Raises:
        UserError: one line naming ``field`` and the target, when the module does not
            import, has no such attribute, or the attribute is not callable.
    """
    module_name, _, attr = spec.partition(":")
    try:
        # A user's own code, named in their config: importing by name is the point here.
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module may raise anything while importing
        first = (str(e).splitlines() or [""])[0]
        raise UserError(f"{field}: cannot import {module_name!r} for {spec!r} "
                        f"({type(e).__name__}: {first}); put the module on PYTHONPATH or beside "
                        "the config file") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{field}: {module_name!r} has no {attr!r} (target {spec!r}); check "
                            "the name after the colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{field}: {spec!r} is a {type(obj).__name__}, not a callable; name a "
                        "function or class that builds it")
    return obj


def call_target(spec: str, field: str, kwargs: dict[str, Any]) -> Any:
    """Load ``spec`` and call it with ``kwargs``; a failing call is one line naming it."""
    fn = load_target(spec, field)
    try:
        return fn(**kwargs)
    except UserError:
        raise
    except Exception as e:  # the user's builder may raise anything on bad kwargs
        first = (str(e).splitlines() or [""])[0]
        raise UserError(f"{field}: {spec}(**{_short(kwargs)}) raised {type(e).__name__}: "
                        f"{first}; check {field.rsplit('.', 1)[0]}.kwargs") from None


def build_target_model(spec: str, kwargs: dict[str, Any], seed: int) -> torch.nn.Module:
    """A user's ``nn.Module``; its own init draws from torch's RNG seeded with ``seed``."""
    torch.manual_seed(seed)  # the same config gives bit-identical initial weights
    model = call_target(spec, "model.target", kwargs)
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"model.target: {spec} returned a {type(model).__name__}, not a "
                        "torch.nn.Module; return the model itself")
    return model


def to_run_data(value: Any, spec: str) -> Dataset | TorchData:
    """Check what a data target returned: a trainwell Dataset or (train, val[, test])."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3) \
            and all(_is_torch_data(v) for v in value):
        parts = list(value) + [None] * (3 - len(value))
        return TorchData(parts[0], parts[1], parts[2], name=spec)
    raise UserError(f"data.target: {spec} returned {_describe(value)}; return a trainwell "
                    "Dataset, or (train, val) / (train, val, test) torch Datasets or DataLoaders")


def _is_torch_data(value: Any) -> bool:
    return isinstance(value, torch.utils.data.Dataset | DataLoader)


def _describe(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        kinds = ", ".join(type(v).__name__ for v in list(value)[:4])
        return f"a {type(value).__name__} of {len(value)} ({kinds})"
    return f"a {type(value).__name__}"


def _short(kwargs: dict[str, Any]) -> str:
    text = repr(kwargs)
    return text if len(text) <= 80 else text[:77] + "..."


def first_inputs(data: TorchData) -> torch.Tensor:
    """Inputs of the first training example(s), for sizing a built-in model."""
    train = data.train
    if isinstance(train, DataLoader):
        batch = next(iter(train))
    else:
        try:
            batch = train[0]
        except (TypeError, NotImplementedError):  # an iterable dataset
            batch = next(iter(train))
        batch = _unsqueeze(batch)
    x = batch["x"] if isinstance(batch, dict) else batch[0]
    if not isinstance(x, torch.Tensor):
        raise UserError(f"data.target: {data.name} yields inputs of type {type(x).__name__}; "
                        "yield tensors, or build the model with model.target")
    return x


def _unsqueeze(sample: Any) -> Any:
    if isinstance(sample, dict):
        return {k: v.unsqueeze(0) if isinstance(v, torch.Tensor) else v for k, v in sample.items()}
    return tuple(v.unsqueeze(0) if isinstance(v, torch.Tensor) else v for v in sample)
