"""Unsupervised pretraining of an MLP's hidden blocks with autoencoders.

Two ways, both on unlabelled inputs ``x`` (Bengio et al. 2007; Vincent et al. 2008):

* **greedy layer-wise** (:func:`pretrain_layerwise`): block ``i`` is trained as the encoder
  of a one-layer autoencoder that reconstructs block ``i``'s input, which is the output of
  the already-pretrained blocks ``0 .. i-1`` (computed once, in eval mode, without noise);
* **stacked** (:func:`pretrain_stacked`): all blocks form one encoder, a mirrored decoder
  maps the last hidden layer back to ``x``, and the whole autoencoder trains end to end
  (starting from the model's current weights, so it can follow the layer-wise stage).

Decoders are linear maps (between the mirrored hidden layers of a stacked decoder, the
encoder's activation), trained with the mean squared reconstruction error
``L = mean((x̂ − x)²)`` against the *clean* target. ``tied=True`` uses the transposed encoder
weight ``Wᵀ`` (plus its own bias) as the decoder weight, halving the parameters;
``tied=False`` gives each decoder layer its own Glorot-initialized weight. Denoising
corrupts the encoder's input only: ``noise="gaussian"`` adds ``noise_level·ε``, ε ~ N(0, 1);
``noise="mask"`` zeroes each input entry with probability ``noise_level``.

Randomness: one generator seeded by ``seed`` draws the decoder init, the batch order and
the noise; dropout inside the blocks draws from torch's global generator, seeded from
``seed`` at each stage inside ``torch.random.fork_rng`` so the caller's global random state
is left as it was. Same seed → same weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .. import optim as tw_optim
from ..errors import UserError
from ..nn.init import glorot_uniform

__all__ = ["PretrainResult", "pretrain_layerwise", "pretrain_stacked"]

Noise = Literal["gaussian", "mask"] | None


@dataclass
class PretrainResult:
    """What pretraining returns.

    Attributes:
        model: a copy of the input model whose ``blocks`` are pretrained (the input model is
            left as it was; the head is untouched). Reuse it with
            ``trainwell.transfer.reuse(result.model, new_head=k)`` or fine-tune it directly.
        losses: mean training reconstruction loss per epoch, one list per stage (one stage
            per block for layer-wise pretraining, a single stage for stacked).
    """

    model: nn.Module
    losses: list[list[float]] = field(default_factory=list)

    @property
    def encoder(self) -> nn.ModuleList | nn.Sequential:
        """The pretrained hidden blocks."""
        return _blocks(self.model)


class _Decoder(nn.Module):
    """A linear decoder layer: ``h ↦ h·Wᵀ_dec + b`` with ``W_dec`` own or the encoder's ``Wᵀ``."""

    def __init__(self, encoder_linear: nn.Linear, tied: bool, generator: torch.Generator) -> None:
        super().__init__()
        n_in, n_out = encoder_linear.in_features, encoder_linear.out_features
        self.tied_to = encoder_linear if tied else None
        if tied:
            self.weight = None
        else:
            self.weight = nn.Parameter(torch.empty(n_in, n_out))
            with torch.no_grad():
                glorot_uniform(self.weight, generator)
        self.bias = nn.Parameter(torch.zeros(n_in))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.tied_to is not None:
            weight = self.tied_to.weight.t()
        else:
            assert self.weight is not None, "an untied decoder owns its weight"
            weight = self.weight
        return F.linear(h, weight, self.bias)

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to the decoder alone (not the tied encoder weight)."""
        return [p for p in (self.weight, self.bias) if p is not None]


def _blocks(model: nn.Module) -> nn.ModuleList | nn.Sequential:
    """``model.blocks``, the hidden blocks to pretrain; a UserError when there are none."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        raise UserError(
            "pretrain: the model has no hidden blocks; build it with trainwell.nn.MLP(hidden=[...])"
        )
    return blocks


def _linear(block: nn.Module) -> nn.Linear:
    """A block's ``linear`` layer (:func:`_check` has made sure each block has one)."""
    linear = getattr(block, "linear", None)
    assert isinstance(linear, nn.Linear), "pretrain: a block without a linear layer"
    return linear


def _act(block: nn.Module) -> nn.Module:
    """A copy of a block's activation module ``act``, the identity when it has none."""
    act = getattr(block, "act", None)
    if act is None:
        return nn.Identity()
    assert isinstance(act, nn.Module), "a block's `act` is a module"
    return copy.deepcopy(act)


def _check(
    model: nn.Module,
    x: torch.Tensor,
    epochs: int,
    batch_size: int,
    noise: Noise,
    noise_level: float,
) -> torch.Tensor:
    blocks = _blocks(model)
    for i, b in enumerate(blocks):
        if not isinstance(getattr(b, "linear", None), nn.Linear):
            raise UserError(
                f"pretrain: block {i} has no `linear` layer; pretraining supports MLP blocks"
            )
    if epochs < 1 or batch_size < 1:
        raise UserError(
            f"pretrain: epochs and batch_size must be >= 1, got {epochs} and {batch_size}"
        )
    if noise not in (None, "gaussian", "mask"):
        raise UserError(
            f"noise: unknown noise {noise!r}; choose 'gaussian', 'mask' or none"
        )
    if noise == "mask" and not 0.0 <= noise_level < 1.0:
        raise UserError(
            f"noise_level: masking probability must be in [0, 1), got {noise_level}"
        )
    if noise == "gaussian" and not (math.isfinite(noise_level) and noise_level >= 0.0):
        raise UserError(f"noise_level: Gaussian std must be >= 0, got {noise_level}")
    x = x.detach().float()
    if x.dim() > 2:
        x = x.flatten(1)
    in_features = _linear(blocks[0]).in_features
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != in_features:
        raise UserError(
            f"pretrain: inputs of shape {tuple(x.shape)} do not fit the model's "
            f"{in_features} input features; pass the unlabelled training features"
        )
    return x


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _corrupt(x: torch.Tensor, noise: Noise, level: float, gen: torch.Generator) -> torch.Tensor:
    if noise is None or level == 0.0:
        return x
    if noise == "gaussian":
        return x + level * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    keep = torch.rand(x.shape, generator=gen) >= level
    return x * keep.to(x.device)


def _train_autoencoder(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    modules: list[nn.Module],
    params: list[nn.Parameter],
    inputs: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: str,
    noise: Noise,
    noise_level: float,
    gen: torch.Generator,
) -> list[float]:
    opt = tw_optim.build(optimizer, params, lr=lr)
    for m in modules:
        m.train()
    losses = []
    n = inputs.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(inputs.device)
        shuffled = inputs[order]
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, n, batch_size):
            target = shuffled[start : start + batch_size]
            if target.shape[0] < 2 and n >= 2:
                continue  # a batch of one breaks batch norm; it is at most one sample per epoch
            recon = decode(encode(_corrupt(target, noise, noise_level, gen)))
            loss = F.mse_loss(recon, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * target.shape[0]
        losses.append(float(total) / n)
    for m in modules:
        m.eval()
    return losses


def pretrain_layerwise(
    model: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 128,
    noise: Noise = None,
    noise_level: float = 0.1,
    tied: bool = False,
    optimizer: str = "adam",
    seed: int = 0,
) -> PretrainResult:
    """Greedy layer-wise autoencoder pretraining of every hidden block of ``model``.

    Contract: for ``i = 0 .. L-1``, with ``h₀ = x`` and ``hᵢ = blockᵢ₋₁(hᵢ₋₁)`` (pretrained
    blocks in eval mode), minimize ``mean((dᵢ(blockᵢ(noise(hᵢ))) − hᵢ)²)`` over block ``i``
    and its linear decoder ``dᵢ`` for ``epochs`` epochs. Earlier blocks are not changed.

    Args:
        model: an MLP with ``blocks`` (each with a ``linear`` layer); it is copied, not changed.
        x: unlabelled inputs ``(N, in_features)`` (more dims are flattened).
        epochs: epochs per block.
        lr: learning rate of each stage's optimizer.
        batch_size: samples per step.
        noise: ``None``, ``"gaussian"`` or ``"mask"`` (denoising autoencoders).
        noise_level: Gaussian standard deviation, or masking probability.
        tied: decoder weight = encoder weight transposed (see the module docstring).
        optimizer: a name from :data:`trainwell.optim.OPTIMIZERS`.
        seed: seeds decoder init, batch order, noise and dropout.

    Returns:
        A :class:`PretrainResult` with one loss curve per block.

    Raises:
        UserError: a model without MLP blocks, inputs of the wrong width, bad noise settings.
    """
    x = _check(model, x, epochs, batch_size, noise, noise_level)
    gen = torch.Generator().manual_seed(seed)
    new = copy.deepcopy(model)
    losses = []
    h = x.to(_device(new))
    for i, block in enumerate(_blocks(new)):
        decoder = _Decoder(_linear(block), tied, gen).to(h.device)
        params = list(block.parameters()) + decoder.own_parameters()
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left alone
            torch.manual_seed(seed * 1_000_003 + i)  # dropout inside the block
            losses.append(
                _train_autoencoder(
                    block,
                    decoder,
                    [block, decoder],
                    params,
                    h,
                    epochs=epochs,
                    lr=lr,
                    batch_size=batch_size,
                    optimizer=optimizer,
                    noise=noise,
                    noise_level=noise_level,
                    gen=gen,
                )
            )
        with torch.no_grad():
            h = block(h)  # eval mode: running BN statistics, no dropout
    new.train()
    return PretrainResult(new, losses)


def pretrain_stacked(
    model: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    noise: Noise = None,
    noise_level: float = 0.1,
    tied: bool = False,
    optimizer: str = "adam",
    seed: int = 0,
) -> PretrainResult:
    """Stacked autoencoder pretraining: all blocks as one encoder, trained end to end.

    Contract: the decoder mirrors the encoder, ``d = d₀ ∘ a ∘ d₁ ∘ … ∘ a ∘ d_{L-1}`` with
    linear ``dᵢ`` (hidden width of block ``i`` → its input width) and ``a`` the blocks'
    activation; minimize ``mean((d(blocks(noise(x))) − x)²)`` over all blocks and the
    decoder for ``epochs`` epochs.

    Args:
        model: an MLP with ``blocks``; it is copied, not changed.
        x: unlabelled inputs ``(N, in_features)``.
        epochs: training epochs.
        lr: learning rate.
        batch_size: samples per step.
        noise: ``None``, ``"gaussian"`` or ``"mask"``.
        noise_level: Gaussian standard deviation, or masking probability.
        tied: each decoder weight is its encoder weight transposed.
        optimizer: a name from :data:`trainwell.optim.OPTIMIZERS`.
        seed: seeds decoder init, batch order, noise and dropout.

    Returns:
        A :class:`PretrainResult` with one loss curve.

    Raises:
        UserError: a model without MLP blocks, inputs of the wrong width, bad noise settings.
    """
    x = _check(model, x, epochs, batch_size, noise, noise_level)
    gen = torch.Generator().manual_seed(seed)
    new = copy.deepcopy(model)
    x = x.to(_device(new))
    blocks = list(_blocks(new))
    decoders = [_Decoder(_linear(b), tied, gen).to(x.device) for b in blocks]
    acts = [_act(b) for b in blocks]

    def encode(h: torch.Tensor) -> torch.Tensor:
        for b in blocks:
            h = b(h)
        return h

    def decode(h: torch.Tensor) -> torch.Tensor:
        for i in reversed(range(len(blocks))):
            h = decoders[i](h)
            if i > 0:
                h = acts[i - 1](h)  # back in block i-1's output space
        return h

    params = list(_blocks(new).parameters()) + [p for d in decoders for p in d.own_parameters()]
    params += [p for a in acts for p in a.parameters()]
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left alone
        torch.manual_seed(seed * 1_000_003)  # dropout inside the blocks
        losses = _train_autoencoder(
            encode,
            decode,
            [*blocks, *decoders, *acts],
            params,
            x,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            noise=noise,
            noise_level=noise_level,
            gen=gen,
        )
    new.train()
    return PretrainResult(new, [losses])
