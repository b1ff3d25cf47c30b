"""A small pre-activation ResNet for 32×32 images (He et al. 2016, "Identity Mappings").

Architecture, for widths ``(w_1, …, w_S)``, blocks ``(b_1, …, b_S)`` and ``K`` classes::

    stem      conv3×3(C → w_1), stride 1
    stage s   b_s × PreActBlock; the first block of stage s > 1 has stride 2 (H, W halve)
    head      BN → act → global average pool → Linear(w_S → K)

    PreActBlock(c_in → c_out, stride):
        a   = act(BN(x))
        out = conv3×3(act(BN(conv3×3(a, stride))))        (c_in → c_out → c_out)
        out = out + (x                 if c_in = c_out and stride = 1
                     conv1×1(a, stride) otherwise: a projection where the shape changes)

The skip path carries ``x`` untouched (no BN or activation on it), which is what lets the
gradient reach early layers of a deep stack. Convolutions have no bias: a batch norm
follows each one (its shift makes a bias redundant).

Parameter count (BN has 2 learned parameters per channel; ``[·]`` is 1 if true, else 0)::

    P = 9·C·w_1                                               stem
      + Σ_blocks [2·c_in + 9·c_in·c_out + 2·c_out + 9·c_out² + [c_in ≠ c_out or stride 2]·c_in·c_out]
      + 2·w_S + (w_S·K + K)                                    final BN, head

e.g. ``resnet()`` (3×32×32, widths (16, 32, 64), one block each, 10 classes) has
432 + 4,672 + 14,432 + 57,536 + 128 + 650 = 77,850 parameters.

Init: ``init="auto"`` gives every convolution He normal (Var = 2/n_in, n_in = c_in·k²) for
a ReLU-family activation and the head Glorot uniform (:func:`trainwell.nn.init.apply_init`);
BN starts at weight 1, bias 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .activations import activation as make_activation
from .init_policy import apply_init

__all__ = ["PreActBlock", "ResNet", "resnet"]


def _positive(argument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{argument}: must be a positive integer, got {value!r}")
    return value


class PreActBlock(nn.Module):
    """One pre-activation residual block: ``x + conv(act(BN(conv(act(BN(x))))))``.

    Children (stable names, in the order the data meets them): ``norm1``, ``act1``,
    ``shortcut`` (a 1×1 conv of the pre-activated input, or ``None`` for the identity),
    ``conv1``, ``norm2``, ``act2``, ``conv2``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of ``conv1`` and of the projection (2 halves H and W).
        activation: activation name (see :data:`trainwell.nn.ACTIVATIONS`).

    Example:
        >>> block = PreActBlock(16, 32, stride=2)
        >>> block(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 activation: str = "relu") -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = make_activation(activation)
        # Registered before conv1 (the order the data meets them): the doctor pairs each
        # conv with the next activation module, so conv1 gets act2 and conv2 the next
        # block's act1, while the projection, which feeds the sum, gets none.
        changes = in_channels != out_channels or stride != 1
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                         if changes else None)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to ``(N, out_channels, ⌈H/stride⌉, ⌈W/stride⌉)``."""
        a = self.act1(self.norm1(x))
        # The projection sees the pre-activated input, as in He et al. 2016 (fig. 4e).
        skip = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(self.act2(self.norm2(self.conv1(a)))) + skip


class ResNet(nn.Module):
    """Pre-activation ResNet: ``stem → stages of PreActBlocks → BN → act → pool → head``.

    See the module docstring for the architecture and its parameter count. Children:
    ``stem`` (conv), ``stages`` (``nn.ModuleList`` of ``nn.Sequential`` of
    :class:`PreActBlock`), ``norm``, ``act``, ``pool``, ``flatten``, ``head`` (``nn.Linear``),
    and ``activation_name`` (read by the init policy and the doctor).

    Args:
        in_channels: image channels (1 for grey, 3 for RGB).
        num_classes: outputs of the head (logits).
        widths: channels of each stage.
        blocks: residual blocks of each stage (same length as ``widths``).
        activation: activation name (see :data:`trainwell.nn.ACTIVATIONS`).
        init: ``"auto"`` (He for convs, Glorot for the head) or an initializer name.
        generator: source of randomness for the init (same seed → identical weights).

    Raises:
        UserError: a non-positive size, ``widths`` and ``blocks`` of different lengths or
            empty, an unknown activation or initializer.

    Example:
        >>> net = ResNet(3, 10, widths=(16, 32, 64), blocks=(1, 1, 1))
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int] = (16, 32, 64),
                 blocks: Sequence[int] = (1, 1, 1), activation: str = "relu", init: str = "auto",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _positive("in_channels", in_channels)
        _positive("num_classes", num_classes)
        widths = [_positive("widths", w) for w in widths]
        blocks = [_positive("blocks", b) for b in blocks]
        if not widths or len(widths) != len(blocks):
            raise UserError(f"widths, blocks: need one width and one block count per stage, got "
                            f"widths={widths} and blocks={blocks}; e.g. (16, 32, 64) and (1, 1, 1)")
        self.activation_name = str(activation).lower()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages = []
        c = widths[0]
        for s, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if s == 0 else 2
            layers = []
            for b in range(count):
                layers.append(PreActBlock(c, width, stride if b == 0 else 1, self.activation_name))
                c = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        # Pre-activation blocks end on a conv: the last BN and activation live here.
        self.norm = nn.BatchNorm2d(c)
        self.act = make_activation(self.activation_name)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(c, num_classes)  # registered last: the init policy's head
        apply_init(self, init, generator=generator, activation=self.activation_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to logits ``(N, num_classes)``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.flatten(self.pool(self.act(self.norm(x)))))


def resnet(in_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
           widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1),
           activation: str = "relu", init: str = "auto",
           generator: torch.Generator | None = None) -> ResNet:
    """Build a :class:`ResNet` from plain arguments (what ``model.kind = "resnet"`` maps to).

    Any H×W ≥ 1 works (global average pooling); the stage strides are tuned for 32×32
    (3 stages: 32 → 16 → 8).

    Args:
        in_shape: input shape ``(C, H, W)``; C is usually 1 or 3.
        num_classes: outputs (logits).
        widths: channels per stage.
        blocks: residual blocks per stage.
        activation: activation name.
        init: ``"auto"`` or an initializer name.
        generator: source of randomness for the init.

    Returns:
        The network, initialized.

    Raises:
        UserError: ``in_shape`` is not three positive sizes, or see :class:`ResNet`.

    Example:
        >>> net = resnet((3, 32, 32), num_classes=10, widths=(16, 32, 64), blocks=(1, 1, 1))
        >>> sum(p.numel() for p in net.parameters())
        77850
    """
    shape = tuple(in_shape)
    if len(shape) != 3:
        raise UserError(f"in_shape: expected (channels, height, width), got {shape}")
    for size in shape:
        _positive("in_shape", size)
    return ResNet(shape[0], num_classes, widths, blocks, activation, init, generator)
