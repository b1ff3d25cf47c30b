"""Reusing pretrained layers: copy, freeze, fine-tune, and unsupervised pretraining.

Example:
    >>> import trainwell as tw
    >>> from trainwell import transfer
    >>> model_b = transfer.reuse("runs/A", n_layers=3, new_head=2)      # doctest: +SKIP
    >>> result = transfer.fine_tune(model_b, data_b, freeze_epochs=5, epochs=10,
    ...                             lr=1e-3, lr_factor=0.1)              # doctest: +SKIP
    >>> enc = transfer.pretrain_layerwise(tw.nn.MLP(40, [128, 64], 10), x_unlabelled,
    ...                                   noise="mask", noise_level=0.2)  # doctest: +SKIP
"""

from __future__ import annotations

from . import pretrain
from .discriminative import layer_factors, param_groups
from .freeze import freeze, frozen_layers, holds_statistics, unfreeze
from .layers import named_layers, select_layers
from .pretrain import PretrainResult, pretrain_layerwise, pretrain_stacked
from .recipe import FineTuneResult, body_layers, fine_tune
from .reuse import copy_blocks, count_blocks, load_source, reuse
from .unfreezing import FreezeThenFineTune, GradualUnfreezing

__all__ = [
    "FineTuneResult",
    "FreezeThenFineTune",
    "GradualUnfreezing",
    "PretrainResult",
    "body_layers",
    "copy_blocks",
    "count_blocks",
    "fine_tune",
    "freeze",
    "frozen_layers",
    "holds_statistics",
    "layer_factors",
    "load_source",
    "named_layers",
    "param_groups",
    "pretrain",
    "pretrain_layerwise",
    "pretrain_stacked",
    "reuse",
    "select_layers",
    "unfreeze",
]
