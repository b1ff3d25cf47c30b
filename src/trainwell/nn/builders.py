"""Model builders: an MLP and a small CNN with stable layer names and the init policy applied.

Layout (other packages — doctor, transfer — rely on these names):

- ``MLP``: ``blocks`` (``nn.ModuleList`` of :class:`Block`, each with children
  ``linear``, optional ``norm``, ``act``, optional ``dropout``), ``head`` (``nn.Linear``),
  ``output_act`` (module or ``None``), ``activation_name``.
- ``CNN``: ``blocks`` (conv blocks: ``conv``, optional ``norm``, ``act``, optional
  ``pool``; Conv1d/BatchNorm1d/…Pool1d for sequences, the 2-D ones for images), ``flatten``, ``dropout`` (or ``None``), ``dense`` (``nn.ModuleList`` of
  :class:`Block`), ``head``, ``activation_name``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .activations import activation as make_activation
from .init_policy import apply_init

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
    policy is applied at construction (see :func:`trainwell.nn.apply_init`):
    ``init="auto"`` picks by activation (Glorot for sigmoid/tanh, He for the ReLU family,
    LeCun for SELU) and gives the head Glorot; a name applies that initializer to every
    layer. Hidden biases start at ``bias_init`` (zeros), the head's bias at zero.

    Args:
        in_features: input size (product of the feature shape).
        hidden: widths of the hidden layers, e.g. ``[256] * 8``.
        out_features: output size (classes, or regression targets).
        activation: hidden activation name (see :data:`trainwell.nn.ACTIVATIONS`).
        init: ``"auto"`` or an initializer spec (see :func:`trainwell.nn.parse_init`), e.g.
            ``"he_normal"``, ``"uniform:0.05"``, ``"normal:0.5"``.
        dropout: dropout rate after each hidden activation (alpha dropout for SELU).
        batch_norm: BatchNorm1d between each hidden linear layer and its activation.
        output_activation: optional activation name applied after the head (None: logits).
        generator: source of randomness for the init (same seed → identical weights).
        activation_kwargs: parameters for the hidden activation (e.g. ``{"alpha": 0.2}``).
        bias_init: spec for the hidden biases, e.g. ``"constant:-1.0"``.
        head_init: spec for the head's weight; None: Glorot under ``init="auto"``, else ``init``.

    Raises:
        UserError: bad sizes, dropout rate, activation or initializer spec.
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
        bias_init: str = "zeros",
        head_init: str | None = None,
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
        # a Linear; transfer.reuse may swap in any module (new_head=)
        self.head: nn.Module = nn.Linear(sizes[-1], out_features)
        self.output_act = None if output_activation is None else make_activation(output_activation)
        apply_init(self, init, generator=generator, activation=self.activation_name,
                   bias_init=bias_init, head_init=head_init)

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


_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL: dict[int, dict[str, type[nn.Module]]] = {
    1: {"max": nn.MaxPool1d, "avg": nn.AvgPool1d},
    2: {"max": nn.MaxPool2d, "avg": nn.AvgPool2d},
}


def _per_block(argument: str, value: Any, blocks: int) -> list[Any]:
    # One value for every block, or a list with one value per block.
    if not isinstance(value, list | tuple):
        return [value] * blocks
    if len(value) != blocks:
        raise UserError(
            f"{argument}: got {len(value)} values for {blocks} conv blocks; give one per "
            "block or a single value for all"
        )
    return list(value)


def _conv_shape(in_shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial sizes) of a CNN input; (L,) is read as one channel, (1, L)."""
    shape = tuple(in_shape)
    if len(shape) not in (1, 2, 3):
        raise UserError(
            f"in_shape: expected (length,), (channels, length) or (channels, height, width), "
            f"got {shape}; give sequences as (C, L) and images as (C, H, W)"
        )
    sizes = [_check_positive("in_shape", int(v)) for v in shape]
    if len(sizes) == 1:
        return 1, (sizes[0],)
    return sizes[0], tuple(sizes[1:])


class CNN(nn.Module):
    """Convolutional net for sequences (1-D) or images (2-D): ``[conv → (norm) → act →
    (pool)] × len(channels) → flatten → (dropout) → dense blocks → head``.

    ``in_shape`` picks the layers: ``(C, L)`` gives Conv1d/BatchNorm1d/MaxPool1d,
    ``(C, H, W)`` gives the 2-D ones, and ``(L,)`` (flat sequence features, e.g. MNIST-1D's
    40) is read as ``(1, L)``: ``forward`` then also accepts ``(batch, L)`` and adds the
    channel axis. Per block i, along each spatial axis of size n:

    - conv: n ← ⌊(n + 2·p_i − k_i) / s_i⌋ + 1, with ``padding="same"`` meaning
      p_i = k_i // 2 (odd kernels at stride 1 keep n; stride s gives ⌈n / s⌉);
    - pool (``"max"``/``"avg"``, window 2, stride 2): n ← ⌊n / 2⌋.

    ``kernel_size``, ``stride``, ``padding`` and ``pool`` take one value for every block
    or a list with one per block, e.g. ``kernel_size=[5, 3], stride=[1, 2],
    pool=[None, "max"]``. The init policy is applied as in :class:`MLP` (Conv weights use
    fans (in/groups)·∏k, out·∏k).

    Args:
        in_shape: input shape ``(C, H, W)``, ``(C, L)`` or ``(L,)``.
        channels: output channels of each conv block.
        out_features: output size.
        kernel_size: kernel size (square in 2-D), per block or for all.
        activation: activation name for conv and dense blocks.
        init: ``"auto"`` or an initializer spec (see :func:`trainwell.nn.parse_init`).
        pool: ``"max"``, ``"avg"`` or ``None``/``"none"``, per block or for all.
        batch_norm: BatchNorm between each conv/linear layer and its activation.
        dropout: dropout rate after flatten and after each dense activation.
        hidden: widths of dense layers between the conv blocks and the head.
        generator: source of randomness for the init (same seed → identical weights).
        bias_init: spec for the conv and dense biases (see :func:`trainwell.nn.apply_init`).
        head_init: spec for the head's weight; None: Glorot under ``init="auto"``, else ``init``.
        stride: conv stride, per block or for all.
        padding: ``"same"`` or an integer ≥ 0, per block or for all.

    Attributes:
        conv_dims: 1 or 2.
        in_shape: the input shape as ``(C, *spatial)``.

    Raises:
        UserError: bad shapes, sizes, rate, pool, stride, padding, activation or initializer,
            a per-block list of the wrong length, or an input too small for the blocks.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        out_features: int = 10,
        kernel_size: int | Sequence[int] = 3,
        activation: str = "relu",
        init: str = "auto",
        pool: str | None | Sequence[str | None] = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
        hidden: Sequence[int] = (),
        generator: torch.Generator | None = None,
        bias_init: str = "zeros",
        head_init: str | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | str | Sequence[int | str] = "same",
    ) -> None:
        super().__init__()
        c, spatial = _conv_shape(in_shape)
        self.conv_dims = len(spatial)
        self.in_shape = (c, *spatial)
        _check_positive("out_features", out_features)
        widths = [_check_positive("hidden", v) for v in hidden]
        rate = _check_rate(dropout)
        n = len(channels)
        kernels = [_check_positive("kernel_size", k)
                   for k in _per_block("kernel_size", kernel_size, n)]
        strides = [_check_positive("stride", v) for v in _per_block("stride", stride, n)]
        paddings = []
        for p, k in zip(_per_block("padding", padding, n), kernels):
            if p == "same":
                p = k // 2
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise UserError(f"padding: must be 'same' or an integer >= 0, got {p!r}")
            paddings.append(p)
        pools = _per_block("pool", pool, n)
        for kind in pools:
            if kind not in ("max", "avg", None, "none"):
                raise UserError(
                    f"pool: unknown pooling {kind!r}; choose 'max', 'avg' or None"
                )
        self.activation_name = str(activation).lower()
        conv, norm = _CONV[self.conv_dims], _NORM[self.conv_dims]
        sizes = list(spatial)
        blocks = []
        per_block = zip(channels, kernels, strides, paddings, pools)
        for i, (out_c, k, st, p, kind) in enumerate(per_block):
            _check_positive("channels", out_c)
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            layers["conv"] = conv(c, out_c, k, stride=st, padding=p, bias=not batch_norm)
            if batch_norm:
                layers["norm"] = norm(out_c)
            layers["act"] = make_activation(self.activation_name)
            sizes = [(v + 2 * p - k) // st + 1 for v in sizes]
            what = f"conv kernel {k}, stride {st}, padding {p}"
            if kind in ("max", "avg") and min(sizes) >= 1:
                layers["pool"] = _POOL[self.conv_dims][kind](2)
                sizes = [v // 2 for v in sizes]
                what += f", {kind} pool 2"
            if min(sizes) < 1:
                raise UserError(
                    f"in_shape: a {tuple(in_shape)} input is too small for the conv blocks: "
                    f"block {i} ({what}) leaves {tuple(max(v, 0) for v in sizes)}, below 1 "
                    "pixel; use fewer blocks, a smaller kernel_size or stride, "
                    "padding='same' or pool=None"
                )
            blocks.append(Block(layers))
            c = out_c
        self.blocks = nn.ModuleList(blocks)
        self.flatten = nn.Flatten()
        self.dropout = _dropout(rate, self.activation_name) if rate > 0.0 else None
        dense_sizes = [c * math.prod(sizes), *widths]
        self.dense = nn.ModuleList(
            _dense_block(a, b, self.activation_name, {}, rate, batch_norm)
            for a, b in zip(dense_sizes[:-1], dense_sizes[1:])
        )
        self.head = nn.Linear(dense_sizes[-1], out_features)
        apply_init(self, init, generator=generator, activation=self.activation_name,
                   bias_init=bias_init, head_init=head_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, *in_shape)`` to ``(batch, out_features)``; 1-D with one channel
        also takes ``(batch, L)``."""
        if self.conv_dims == 1 and x.dim() == 2 and self.in_shape[0] == 1:
            x = x.unsqueeze(1)
        for block in self.blocks:
            x = block(x)
        x = self.flatten(x)
        if self.dropout is not None:
            x = self.dropout(x)
        for block in self.dense:
            x = block(x)
        return self.head(x)
