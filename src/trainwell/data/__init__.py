"""Data: in-memory datasets of tensors, the sources that fill them, torch data adapters."""

from __future__ import annotations

from .dataset import Dataset, Split, iterate_batches, standardize
from .loaders import EpochSampler, as_source
from .sources import SOURCES, cache_dir, load

__all__ = ["Dataset", "Split", "iterate_batches", "standardize", "load", "SOURCES", "cache_dir",
           "EpochSampler", "as_source"]
