"""Regularization parts that live with the model: MC dropout prediction and max-norm.

- MC dropout (Gal & Ghahramani 2016): keep dropout on at prediction time, average N
  stochastic passes. The mean of the predicted probabilities is usually a better
  prediction than one deterministic pass, and their spread estimates the model's
  uncertainty. Batch-norm layers stay in eval mode (running statistics, untouched).
- Max-norm (Srebro et al. 2005; Srivastava et al. 2014): after each optimizer step, every
  unit's incoming weight vector w is rescaled to w · min(1, r/‖w‖₂).

Alpha dropout for SELU nets is ``torch.nn.AlphaDropout`` (re-exported by ``trainwell.nn``;
the builders use it when the activation is SELU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

__all__ = ["MCDropout", "MaxNorm", "max_norm_", "mc_predict"]

_OUTPUTS = ("softmax", "sigmoid", "raw")


class MCDropout(nn.Dropout):
    """Dropout that stays on in eval mode: y = x·m/(1 − p), m ~ Bernoulli(1 − p) always.

    Put it in a model to make every prediction a Monte Carlo sample; :func:`mc_predict`
    does the same for ordinary dropout layers without changing the model.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply dropout whatever the module's mode."""
        return F.dropout(x, self.p, training=True, inplace=self.inplace)


def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    n_samples: int = 30,
    generator: torch.Generator | None = None,
    output: str = "softmax",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo dropout prediction: mean and spread of N stochastic passes.

    With pₖ = output(model(x)) for pass k = 1..N, dropout active and batch norm in eval
    mode: mean = (1/N) Σ pₖ, std = √((1/N) Σ (pₖ − mean)²) (population std). The model's
    train/eval flags are restored afterwards, module by module.

    Args:
        model: a model with at least one dropout layer.
        x: one batch of inputs.
        n_samples: N, the number of passes (≥ 2).
        generator: seeds the dropout masks (the global RNG state is restored afterwards,
            so the same generator state gives the same result); None uses the global RNG.
        output: ``"softmax"`` (class probabilities over the last dim), ``"sigmoid"``, or
            ``"raw"`` (model outputs, for regression).

    Returns:
        ``(mean, std)``, each shaped like one pass's output.

    Raises:
        UserError: ``n_samples`` < 2, unknown ``output``, or no dropout layer in the model.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise UserError(f"mc_predict: n_samples must be an integer ≥ 2, got {n_samples!r}")
    if output not in _OUTPUTS:
        raise UserError(f"mc_predict: unknown output {output!r}; choose one of {list(_OUTPUTS)}")
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not dropouts:
        raise UserError(
            "mc_predict: the model has no dropout layer, so every pass is the same; "
            "build it with dropout > 0 (e.g. MLP(..., dropout=0.2))"
        )
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # batch norm uses its running statistics and does not update them
        for m in dropouts:
            m.train()
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=_devices(x), enabled=generator is not None),
        ):
            if generator is not None:
                seed = int(torch.randint(0, 2**62, (), generator=generator))
                torch.manual_seed(seed)
            samples = torch.stack([_transform(model(x), output) for _ in range(n_samples)])
    finally:
        for module, training in modes:
            module.training = training
    mean = samples.mean(dim=0)
    std = samples.std(dim=0, correction=0)
    return mean, std


def _devices(x: torch.Tensor) -> list[int]:
    # fork_rng must also save/restore the CUDA generator when passes run on a GPU.
    return [x.device.index or 0] if x.device.type == "cuda" else []


def _transform(out: torch.Tensor, output: str) -> torch.Tensor:
    if output == "softmax":
        return out.softmax(dim=-1)
    if output == "sigmoid":
        return out.sigmoid()
    return out


def _unit_dims(weight: torch.Tensor, dim: int | Sequence[int] | None) -> tuple[int, ...]:
    if dim is None:  # every dim but the output unit's: a unit's whole incoming vector
        return tuple(range(1, weight.dim()))
    return (dim,) if isinstance(dim, int) else tuple(dim)


@torch.no_grad()
def max_norm_(
    model: nn.Module, max_value: float, dim: int | Sequence[int] | None = None
) -> torch.Tensor:
    """Max-norm constraint, in place: w ← w · min(1, r / ‖w‖₂) for each unit's weights.

    A unit's incoming weight vector is a row of a Linear weight (out, in) — norm over
    dim 1 — or a filter of a Conv weight (out, in/groups, *k) — norm over all dims but 0.
    Biases are not constrained. Apply after ``optimizer.step()``.

    Args:
        model: its Linear and Conv weights are constrained (or a single such module).
        max_value: r > 0, the largest allowed norm (typically 2–4).
        dim: the dims to take the norm over (None: all but dim 0).

    Returns:
        The largest unit norm found before rescaling (a 0-d tensor; 0 if no weights).

    Raises:
        UserError: ``max_value`` ≤ 0.
    """
    r = float(max_value)
    if not r > 0.0:
        raise UserError(f"max_value: must be > 0, got {max_value!r}; use e.g. 3.0")
    maxima: list[torch.Tensor] = []
    for module in model.modules():
        if not isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
            continue
        w = module.weight
        norms = torch.linalg.vector_norm(w, dim=_unit_dims(w, dim), keepdim=True)
        # r / 0 = inf, clamped to 1: all-zero units stay as they are.
        w.mul_(torch.clamp(r / norms, max=1.0))
        maxima.append(norms.max())
    # One reduction at the end, on the weights' device: no host sync per layer.
    return torch.stack(maxima).max() if maxima else torch.zeros(())


class MaxNorm:
    """Max-norm constraint as an object: ``MaxNorm(3.0)(model)`` after each step.

    Same formula as :func:`max_norm_`: w ← w · min(1, r / ‖w‖₂) per unit.

    Args:
        max_value: r > 0, the largest allowed norm of a unit's incoming weights.
        dim: the dims of the norm (None: all but dim 0).

    Raises:
        UserError: ``max_value`` ≤ 0.
    """

    def __init__(self, max_value: float, dim: int | Sequence[int] | None = None) -> None:
        if not float(max_value) > 0.0:
            raise UserError(
                f"max_value: must be > 0, got {max_value!r}; use e.g. 3.0"
            )
        self.max_value = float(max_value)
        self.dim = dim

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """Constrain ``model`` in place; return the largest unit norm before rescaling."""
        return max_norm_(model, self.max_value, self.dim)

    def __repr__(self) -> str:
        return f"MaxNorm(max_value={self.max_value}, dim={self.dim})"
