"""Neural-network parts: initializers and the init policy, activations, regularization, builders.

Example:
    >>> import trainwell as tw
    >>> model = tw.nn.MLP(in_features=40, hidden=[256] * 8, out_features=10, activation="relu")
    >>> tw.nn.init_for_activation("selu")
    'lecun_normal'
"""

from __future__ import annotations

from torch.nn import AlphaDropout

from . import init
from .activations import ACTIVATIONS, activation, name_of_activation
from .builders import CNN, MLP, Block
from .init import INITIALIZERS, init_for_activation
from .init_policy import InitSpec, apply_init, parse_init
from .regularization import MaxNorm, MCDropout, max_norm_, mc_predict
from .resnet import PreActBlock, ResNet, resnet
from .swap import activation_modules, swap_activations

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "AlphaDropout",
    "Block",
    "CNN",
    "InitSpec",
    "MLP",
    "MCDropout",
    "MaxNorm",
    "PreActBlock",
    "ResNet",
    "activation",
    "activation_modules",
    "apply_init",
    "init",
    "init_for_activation",
    "max_norm_",
    "mc_predict",
    "swap_activations",
    "name_of_activation",
    "parse_init",
    "resnet",
]
