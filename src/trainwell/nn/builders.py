"""Model builders: an MLP and a small CNN with stable layer names and the init policy applied.

Layout (other packages — doctor, transfer — rely on these names):

- ``MLP``: ``blocks`` (``nn.ModuleList`` of :class:`Block`, each with children
  ``linear``, optional ``norm``, ``act``, optional ``dropout``), ``head`` (``nn.Linear``),
  ``output_act`` (module or ``None``), ``activation_name``.
- ``CNN``: ``blocks`` (conv blocks: ``conv``, optional ``norm``, ``act``, optional
  ``pool``), ``flatten``, ``dropout`` (or ``None``), ``dense`` (``nn.ModuleList`` of
  :class:`Block`), ``head``, ``activation_name``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .activations import activation as make_activation
from .init import apply_init

__all__ = ["Block", "CNN", "MLP"]


class Block(nn.Sequential):
    """A named sequence of layers; ``forward`` applies the children in order.

    An ``nn.Sequential`` whose children have stable names (``linear``/``conv``, ``norm``,
    ``act``, ``pool``, ``dropout``), so ``block.linear`` and ``block.act`` can be reached
    by name.
    """


def _check_positive(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{field}: must be a positive integer, got {value!r}; fix the model size")
    return value


def _check_rate(value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise UserError(f"dropout: must be in [0, 1), got {value!r}; use e.g. 0.1-0.5")
    return float(value)


def _dropout(rate: float, activation_name: str) -> nn.Module:
    # SELU nets keep mean 0 / variance 1 only with alpha dropout (Klambauer et al. 2017).
    return nn.AlphaDropout(rate) if activation_name == "selu" else nn.Dropout(rate)


def _dense_block(
    n_in: int,
    n_out: int,
    activation: str,
    activation_kwargs: dict[str, Any],
    dropout: float,
    batch_norm: bool,
) -> Block:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    # A bias before batch norm is cancelled by its mean subtraction: leave it out.
    layers["linear"] = nn.Linear(n_in, n_out, bias=not batch_norm)
    if batch_norm:
        layers["norm"] = nn.BatchNorm1d(n_out)
    layers["act"] = make_activation(activation, **activation_kwargs)
    if dropout > 0.0:
        layers["dropout"] = _dropout(dropout, activation)
    return Block(layers)


class MLP(nn.Module):
    """Multilayer perceptron: ``[linear → (norm) → act → (dropout)] × len(hidden) → head``.

    Inputs with more than 2 dimensions are flattened from dim 1 (images work). The init
    policy is applied at construction (see :func:`trainwell.nn.init.apply_init`):
    ``init="auto"`` picks by activation (Glorot for sigmoid/tanh, He for the ReLU family,
    LeCun for SELU) and gives the head Glorot; a name applies that initializer to every
    layer. Biases start at zero.

    Args:
        in_features: input size (product of the feature shape).
        hidden: widths of the hidden layers, e.g. ``[256] * 8``.
        out_features: output size (classes, or regression targets).
        activation: hidden activation name (see :data:`trainwell.nn.ACTIVATIONS`).
        init: ``"auto"`` or an initializer name (see :data:`trainwell.nn.INITIALIZERS`).
        dropout: dropout rate after each hidden activation (alpha dropout for SELU).
        batch_norm: BatchNorm1d between each hidden linear layer and its activation.
        output_activation: optional activation name applied after the head (None: logits).
        generator: source of randomness for the init (same seed → identical weights).
        activation_kwargs: parameters for the hidden activation (e.g. ``{"alpha": 0.2}``).

    Raises:
        UserError: bad sizes, dropout rate, activation or initializer name.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
        init: str = "auto",
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_activation: str | None = None,
        generator: torch.Generator | None = None,
        activation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_positive("in_features", in_features)
        _check_positive("out_features", out_features)
        widths = [_check_positive("hidden", w) for w in hidden]
        rate = _check_rate(dropout)
        self.activation_name = str(activation).lower()
        kwargs = dict(activation_kwargs or {})
        sizes = [in_features, *widths]
        self.blocks = nn.ModuleList(
            _dense_block(a, b, self.activation_name, kwargs, rate, batch_norm)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(sizes[-1], out_features)
        self.output_act = None if output_activation is None else make_activation(output_activation)
        apply_init(self, init, generator=generator, activation=self.activation_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, *features)`` to ``(batch, out_features)``."""
        if x.dim() > 2:
            x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        x = self.head(x)
        if self.output_act is not None:
            x = self.output_act(x)
        return x


class CNN(nn.Module):
    """Small convolutional net: ``[conv → (norm) → act → (pool)] × len(channels) → flatten →
    (dropout) → dense blocks → head``.

    Convolutions use "same" padding (``kernel_size // 2``, odd kernels keep H×W); each
    pool halves H and W. The init policy is applied as in :class:`MLP` (Conv weights use
    fans (in/groups)·k², out·k²).

    Args:
        in_shape: input shape ``(C, H, W)``.
        channels: output channels of each conv block.
        out_features: output size.
        kernel_size: square kernel size of every conv layer.
        activation: activation name for conv and dense blocks.
        init: ``"auto"`` or an initializer name.
        pool: ``"max"``, ``"avg"`` or ``None``/``"none"`` (2×2 pooling after each conv block).
        batch_norm: BatchNorm2d/1d between each conv/linear layer and its activation.
        dropout: dropout rate after flatten and after each dense activation.
        hidden: widths of dense layers between the conv blocks and the head.
        generator: source of randomness for the init (same seed → identical weights).

    Raises:
        UserError: bad shapes, sizes, rate, pool, activation or initializer name, or an
            input too small for the pooling.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        out_features: int = 10,
        kernel_size: int = 3,
        activation: str = "relu",
        init: str = "auto",
        pool: str | None = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
        hidden: Sequence[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise UserError(
                f"in_shape: expected (channels, height, width), got {tuple(in_shape)}; "
                "give image inputs as (C, H, W)"
            )
        c, h, w = (_check_positive("in_shape", int(v)) for v in in_shape)
        _check_positive("out_features", out_features)
        _check_positive("kernel_size", kernel_size)
        widths = [_check_positive("hidden", v) for v in hidden]
        rate = _check_rate(dropout)
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, None: None, "none": None}
        if pool not in pools:
            raise UserError(f"pool: unknown pooling {pool!r}; choose 'max', 'avg' or None")
        self.activation_name = str(activation).lower()
        grow = 2 * (kernel_size // 2) - kernel_size + 1  # "same" padding: +1 for even kernels
        blocks = []
        for out_c in channels:
            _check_positive("channels", out_c)
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            layers["conv"] = nn.Conv2d(
                c, out_c, kernel_size, padding=kernel_size // 2, bias=not batch_norm
            )
            if batch_norm:
                layers["norm"] = nn.BatchNorm2d(out_c)
            layers["act"] = make_activation(self.activation_name)
            h, w = h + grow, w + grow
            if pools[pool] is not None:
                layers["pool"] = pools[pool](2)
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise UserError(
                    f"channels: {len(channels)} conv blocks shrink a {tuple(in_shape)} "
                    "input below 1 pixel; use fewer blocks or pool=None"
                )
            blocks.append(Block(layers))
            c = out_c
        self.blocks = nn.ModuleList(blocks)
        self.flatten = nn.Flatten()
        self.dropout = _dropout(rate, self.activation_name) if rate > 0.0 else None
        sizes = [c * h * w, *widths]
        self.dense = nn.ModuleList(
            _dense_block(a, b, self.activation_name, {}, rate, batch_norm)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(sizes[-1], out_features)
        apply_init(self, init, generator=generator, activation=self.activation_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, C, H, W)`` to ``(batch, out_features)``."""
        for block in self.blocks:
            x = block(x)
        x = self.flatten(x)
        if self.dropout is not None:
            x = self.dropout(x)
        for block in self.dense:
            x = block(x)
        return self.head(x)
