"""The activation registry: names → torch activation modules.

Every entry is a torch module (torch already has the exact functions), built by
:func:`activation` from a name used in configs (``model.activation``). Formulas, with
z the pre-activation:

========== ==========================================================================
relu       max(0, z)
leaky_relu max(αz, z), α = 0.01 (``negative_slope``; ``alpha`` is accepted too)
prelu      max(0, z) + a·min(0, z), a learned, starting at 0.25
rrelu      slope a ~ U(l, u) per element in training, a = (l + u)/2 in eval; l=1/8, u=1/3
elu        z for z > 0, α(eᶻ − 1) otherwise, α = 1
selu       λ·elu_α(z), λ ≈ 1.0507, α ≈ 1.6733 (Klambauer et al. 2017)
gelu       z·Φ(z), Φ the standard normal CDF
silu       z·σ(z) (alias ``swish``)
mish       z·tanh(softplus(z))
sigmoid    σ(z) = 1/(1 + e⁻ᶻ)
tanh       tanh(z)
softplus   log(1 + eᶻ)
softmax    eᶻⁱ / Σⱼ eᶻʲ over ``dim`` (default −1)
log_softmax zᵢ − log Σⱼ eᶻʲ over ``dim`` (default −1): the head for the ``nll`` loss
identity   z (alias ``linear``)
========== ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import UserError

__all__ = ["ACTIVATIONS", "activation", "name_of_activation"]


def _leaky_relu(negative_slope: float = 0.01, alpha: float | None = None) -> nn.Module:
    # The playbook writes the slope as α; torch calls it negative_slope. Accept both.
    return nn.LeakyReLU(negative_slope=negative_slope if alpha is None else alpha)


def _softmax(dim: int = -1) -> nn.Module:
    # torch's Softmax has no default dim; the class axis is last for (batch, classes).
    return nn.Softmax(dim=dim)


def _log_softmax(dim: int = -1) -> nn.Module:
    # The head torch's nll loss expects: log-probabilities over the last (class) axis.
    return nn.LogSoftmax(dim=dim)


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": _leaky_relu,
    "prelu": nn.PReLU,
    "rrelu": nn.RReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "identity": nn.Identity,
    "linear": nn.Identity,
}
"""Registry: activation name → factory ``(**kwargs) -> nn.Module``."""

# Module type → canonical name, to read the activation off a user's own model.
_TYPE_NAMES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.RReLU: "rrelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Softplus: "softplus",
    nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}


def activation(name: str, **kwargs: Any) -> nn.Module:
    """Build the activation module registered as ``name``.

    The formulas are in this module's docstring; keyword arguments go to the torch
    module (e.g. ``activation("elu", alpha=0.5)``, ``activation("leaky_relu", alpha=0.2)``).

    Args:
        name: a key of :data:`ACTIVATIONS` (case-insensitive).
        **kwargs: the activation's parameters.

    Returns:
        A fresh ``nn.Module``.

    Raises:
        UserError: unknown name, or arguments the activation does not take.
    """
    key = str(name).lower()
    factory = ACTIVATIONS.get(key)
    if factory is None:
        raise UserError(
            f"activation: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UserError(
            f"activation: bad arguments {sorted(kwargs)} for {key!r} ({exc}); "
            "pass only the parameters of that activation"
        ) from None


def name_of_activation(module: nn.Module) -> str | None:
    """Return the registry name of an activation module, or None if it is not one.

    Args:
        module: any module.

    Returns:
        The canonical name (``"silu"`` for ``nn.SiLU``), ``None`` for other modules.
    """
    return _TYPE_NAMES.get(type(module))
