"""Data: in-memory datasets of tensors and the sources that fill them."""

from __future__ import annotations

from .dataset import Dataset, Split, iterate_batches, standardize
from .sources import SOURCES, cache_dir, load

__all__ = ["Dataset", "Split", "iterate_batches", "standardize", "load", "SOURCES", "cache_dir"]
