"""Reusing pretrained layers: copy, freeze, fine-tune, and unsupervised pretraining.

Example:
    >>> import trainwell as tw
    >>> from trainwell import transfer
    >>> model_b = transfer.reuse("runs/A", n_layers=3, new_head=2)      # doctest: +SKIP
    >>> result = transfer.fine_tune(model_b, data_b, head_epochs=5, epochs=10,
    ...                             lr=1e-3, factor=0.1)                 # doctest: +SKIP
"""

from __future__ import annotations

from .discriminative import layer_factors, param_groups
from .freeze import freeze, frozen_layers, holds_statistics, unfreeze
from .layers import named_layers, select_layers
from .reuse import copy_blocks, load_source, reuse
from .unfreezing import FreezeThenFineTune, GradualUnfreezing

__all__ = [
    "FreezeThenFineTune",
    "GradualUnfreezing",
    "copy_blocks",
    "freeze",
    "frozen_layers",
    "holds_statistics",
    "layer_factors",
    "load_source",
    "named_layers",
    "param_groups",
    "reuse",
    "select_layers",
    "unfreeze",
]
