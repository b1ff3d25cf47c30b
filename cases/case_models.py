"""User models for the doctor's cases: the same nets written the ways users write them.

A case names one with ``model.target = "case_models:Net"`` (the config's folder is on the
import path, see ``config.root``) and picks the way its activations are written with
``model.kwargs.style``:

- ``module``: ``nn.Sigmoid()``/``nn.ReLU()``/``nn.Tanh()`` modules, as trainwell builds them;
- ``functional``: ``torch.sigmoid``/``F.relu``/``torch.tanh`` calls in ``forward``;
- ``method``: tensor methods ``x.sigmoid()``/``x.relu()``/``x.tanh()`` in ``forward``;
- ``custom``: the user's own activation modules (:class:`Squash`, :class:`Rectifier`,
  :class:`Swish`), computed from elementary operations, whose class names say nothing.

The faults are the user's own init written in the constructor (``init = "normal"``: N(0, σ²)
hidden weights; ``bias``: a constant hidden bias) and an activation on the output
(``head``). Weights not set that way keep torch's default init, drawn from the run's seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EXP_CLAMP = 30.0  # e^30 ≈ 1e13: (1 + e^z)² stays finite in float32, so no inf·0 = NaN grads


class Squash(nn.Module):
    """A user's sigmoid: 1 / (1 + e^(−x)), written out (x clamped to ±30 against overflow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + torch.exp(-x.clamp(-_EXP_CLAMP, _EXP_CLAMP)))


class Rectifier(nn.Module):
    """A user's ReLU: max(x, 0) as a clamp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0.0)


class Bend(nn.Module):
    """A user's tanh: 2 σ(2x) − 1, written out (2x clamped to ±30)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 / (1.0 + torch.exp(-(2.0 * x).clamp(-_EXP_CLAMP, _EXP_CLAMP))) - 1.0


class Swish(nn.Module):
    """A user's swish / SiLU: x · σ(x), σ written out (its argument clamped to ±30)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (1.0 + torch.exp(-x.clamp(-_EXP_CLAMP, _EXP_CLAMP)))


_MODULES = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "swish": nn.SiLU}
_FUNCTIONS = {"sigmoid": torch.sigmoid, "relu": F.relu, "tanh": torch.tanh, "swish": F.silu}
_METHODS = {"sigmoid": torch.Tensor.sigmoid, "relu": torch.Tensor.relu,
            "tanh": torch.Tensor.tanh}
_CUSTOM = {"sigmoid": Squash, "relu": Rectifier, "tanh": Bend, "swish": Swish}
_STYLES = ("module", "functional", "method", "custom")


def _head_module(name: str) -> nn.Module:
    if name == "softmax":
        return nn.Softmax(dim=1)
    if name == "log_softmax":
        return nn.LogSoftmax(dim=1)
    return _MODULES[name]()


class Net(nn.Module):
    """An MLP whose activations are written in one of four styles (see the module doc).

    Args:
        n_in: input features (digits: 64, mnist1d: 40, moons: 2).
        n_out: output units (the classes, or 1 for a BCE head).
        width: units per hidden layer.
        depth: hidden layers.
        act: hidden activation: sigmoid, relu, tanh or swish.
        style: module, functional, method or custom.
        init: hidden weights: torch (nn.Linear's default), normal (N(0, init_std²), the
            classic N(0, 1) mistake), he (He normal) or glorot (Glorot normal).
        init_std: σ of ``init = "normal"``.
        bias: every hidden bias starts at this constant (negative: dead ReLUs); none = torch's.
        head: an activation on the output (relu, sigmoid, softmax or log_softmax) in the same
            style, or none.
    """

    def __init__(self, n_in: int = 64, n_out: int = 10, width: int = 64, depth: int = 4,
                 act: str = "relu", style: str = "functional", init: str = "torch",
                 init_std: float = 1.0, bias: float | None = None, head: str = "none") -> None:
        super().__init__()
        if style not in _STYLES:
            raise ValueError(f"style: one of {_STYLES}, got {style!r}")
        sizes = [n_in] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], n_out)
        head_name = None if head == "none" else head
        self.style, self.act_name, self.head_name = style, act, head_name
        if style == "module":
            self.acts = nn.ModuleList(_MODULES[act]() for _ in self.layers)
            self.head_act = _head_module(head_name) if head_name else None
        elif style == "custom":
            self.acts = nn.ModuleList(_CUSTOM[act]() for _ in self.layers)
            self.head_act = _CUSTOM[head_name]() if head_name in _CUSTOM else None
        with torch.no_grad():
            for layer in self.layers:
                if init == "normal":
                    layer.weight.normal_(0.0, init_std)
                elif init == "he":
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                elif init == "glorot":
                    nn.init.xavier_normal_(layer.weight)
                elif init != "torch":
                    raise ValueError(f"init: torch, normal, he or glorot, got {init!r}")
                if bias is not None:
                    layer.bias.fill_(bias)

    def _act(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if self.style in ("module", "custom"):
            return self.acts[i](x)
        if self.style == "functional":
            return _FUNCTIONS[self.act_name](x)
        return _METHODS[self.act_name](x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_name is None:
            return x
        if self.style in ("module", "custom") and self.head_act is not None:
            return self.head_act(x)
        if self.head_name in ("softmax", "log_softmax"):
            return getattr(F, self.head_name)(x, dim=1) if self.style == "functional" \
                else getattr(x, self.head_name)(dim=1)
        if self.style == "functional":
            return _FUNCTIONS[self.head_name](x)
        return _METHODS[self.head_name](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = self._act(i, layer(x))
        return self._head(self.out(x))
