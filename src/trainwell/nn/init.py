"""Weight initializers and the init-by-activation policy (``apply_init``: :mod:`.init_policy`).

Fans, for a Linear weight of shape (out, in) and a Conv weight of shape
(out, in/groups, *kernel), with r = ∏ kernel (r = 1 for Linear):
n_in = (in/groups)·r, n_out = out·r. A uniform U(−a, a) has variance a²/3, so each
variance Var below is reached with a = √(3·Var) or std = √Var.

========================= =================================================
glorot_uniform / _normal  Var = 2 / (n_in + n_out)        (Glorot & Bengio 2010)
he_uniform / he_normal    Var = 2 / n_fan, n_fan = n_in   (He et al. 2015);
                          ``mode="fan_avg"``: n_fan = (n_in + n_out)/2
lecun_uniform / _normal   Var = 1 / n_in                  (LeCun et al. 1998)
orthogonal                W = gain·Q, Q with orthonormal rows or columns (Saxe et al. 2014)
normal                    w ~ N(0, std²), std = 1: the naive init that saturates or explodes
uniform                   w ~ U(−a, a), a = 1: Var = a²/3 whatever the fans
zeros / constant          w = 0 / w = value: every unit of a layer stays identical
========================= =================================================

Spec strings (``"uniform:0.05"``), the per-layer policy and ``apply_init`` live in
:mod:`trainwell.nn.init_policy`.

Every initializer is ``fn(tensor, generator=None, ...) -> tensor``, works in place and
draws only from ``generator`` when one is given, so the same seed gives bit-identical
weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError
from .activations import ACTIVATIONS

__all__ = [
    "INITIALIZERS",
    "constant",
    "fans",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "init_for_activation",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "orthogonal",
    "uniform",
    "zeros",
]


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """Return (n_in, n_out) of a Linear (out, in) or Conv (out, in/groups, *k) weight.

    Args:
        tensor: a weight with at least 2 dimensions.

    Returns:
        ``(n_in, n_out) = (in·r, out·r)`` with r the product of the kernel sizes.

    Raises:
        UserError: the tensor has fewer than 2 dimensions (a bias or a norm weight).
    """
    if tensor.dim() < 2:
        raise UserError(
            f"tensor: cannot compute fans of a tensor of shape {tuple(tensor.shape)}; "
            "initializers with fans apply to Linear/Conv weights (2+ dimensions)"
        )
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _uniform_var(
    tensor: torch.Tensor, var: float, generator: torch.Generator | None
) -> torch.Tensor:
    bound = math.sqrt(3.0 * var)  # U(−a, a) has variance a²/3
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def _normal_var(
    tensor: torch.Tensor, var: float, generator: torch.Generator | None
) -> torch.Tensor:
    with torch.no_grad():
        return tensor.normal_(0.0, math.sqrt(var), generator=generator)


def glorot_uniform(
    tensor: torch.Tensor, generator: torch.Generator | None = None, gain: float = 1.0
) -> torch.Tensor:
    """Glorot (Xavier) uniform: U(−a, a), a = gain·√(6/(n_in + n_out)); Var = 2/(n_in+n_out)·gain².

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).
        gain: multiplies the standard deviation.

    Returns:
        ``tensor``.
    """
    n_in, n_out = fans(tensor)
    return _uniform_var(tensor, gain**2 * 2.0 / (n_in + n_out), generator)


def glorot_normal(
    tensor: torch.Tensor, generator: torch.Generator | None = None, gain: float = 1.0
) -> torch.Tensor:
    """Glorot (Xavier) normal: N(0, σ²), σ² = gain²·2/(n_in + n_out).

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).
        gain: multiplies the standard deviation.

    Returns:
        ``tensor``.
    """
    n_in, n_out = fans(tensor)
    return _normal_var(tensor, gain**2 * 2.0 / (n_in + n_out), generator)


def _he_var(tensor: torch.Tensor, mode: str, negative_slope: float) -> float:
    n_in, n_out = fans(tensor)
    fan: float
    if mode == "fan_in":
        fan = n_in
    elif mode == "fan_avg":
        fan = (n_in + n_out) / 2.0
    elif mode == "fan_out":
        fan = n_out
    else:
        raise UserError(
            f"mode: unknown He mode {mode!r}; choose one of ['fan_avg', 'fan_in', 'fan_out']"
        )
    # A leaky slope α keeps a share α² of the negative half: Var = 2 / ((1 + α²)·fan).
    return 2.0 / ((1.0 + negative_slope**2) * fan)


def he_uniform(
    tensor: torch.Tensor,
    generator: torch.Generator | None = None,
    mode: str = "fan_in",
    negative_slope: float = 0.0,
) -> torch.Tensor:
    """He (Kaiming) uniform: U(−a, a) with Var = a²/3 = 2/((1 + α²)·n_fan).

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).
        mode: ``"fan_in"`` (n_fan = n_in, keeps forward variance), ``"fan_avg"``
            (n_fan = (n_in + n_out)/2) or ``"fan_out"`` (n_fan = n_out).
        negative_slope: α of a leaky ReLU that follows (0 for ReLU).

    Returns:
        ``tensor``.

    Raises:
        UserError: unknown ``mode``.
    """
    return _uniform_var(tensor, _he_var(tensor, mode, negative_slope), generator)


def he_normal(
    tensor: torch.Tensor,
    generator: torch.Generator | None = None,
    mode: str = "fan_in",
    negative_slope: float = 0.0,
) -> torch.Tensor:
    """He (Kaiming) normal: N(0, σ²), σ² = 2/((1 + α²)·n_fan) (untruncated).

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).
        mode: ``"fan_in"``, ``"fan_avg"`` or ``"fan_out"`` (see :func:`he_uniform`).
        negative_slope: α of a leaky ReLU that follows (0 for ReLU).

    Returns:
        ``tensor``.

    Raises:
        UserError: unknown ``mode``.
    """
    return _normal_var(tensor, _he_var(tensor, mode, negative_slope), generator)


def lecun_uniform(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun uniform: U(−a, a), a = √(3/n_in); Var = 1/n_in.

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).

    Returns:
        ``tensor``.
    """
    return _uniform_var(tensor, 1.0 / fans(tensor)[0], generator)


def lecun_normal(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun normal: N(0, 1/n_in) (untruncated; what SELU's self-normalization assumes).

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).

    Returns:
        ``tensor``.
    """
    return _normal_var(tensor, 1.0 / fans(tensor)[0], generator)


def orthogonal(
    tensor: torch.Tensor, generator: torch.Generator | None = None, gain: float = 1.0
) -> torch.Tensor:
    """Orthogonal: W = gain·Q, Q from the QR of a Gaussian matrix (weight flattened to (out, n_in)).

    Q has orthonormal rows (out ≤ n_in) or columns (out > n_in), so ‖Wx‖ = gain·‖x‖ for
    square weights. Uses ``torch.nn.init.orthogonal_``, which draws from ``generator``.

    Args:
        tensor: Linear or Conv weight, changed in place.
        generator: source of randomness (None: torch's global generator).
        gain: scale of the orthogonal matrix.

    Returns:
        ``tensor``.
    """
    fans(tensor)  # same shape check and message as the other initializers
    with torch.no_grad():
        return nn.init.orthogonal_(tensor, gain=gain, generator=generator)


def normal(
    tensor: torch.Tensor, generator: torch.Generator | None = None, std: float = 1.0
) -> torch.Tensor:
    """Naive normal: w ~ N(0, std²), std = 1 by default, whatever the fans.

    With std = 1 a layer multiplies the variance by about n_in: sigmoid/tanh units
    saturate and gradients vanish or explode (the problem Glorot/He solve).

    Args:
        tensor: any tensor, changed in place.
        generator: source of randomness (None: torch's global generator).
        std: standard deviation.

    Returns:
        ``tensor``.
    """
    return _normal_var(tensor, std**2, generator)


def uniform(
    tensor: torch.Tensor, generator: torch.Generator | None = None, bound: float = 1.0
) -> torch.Tensor:
    """Naive uniform: w ~ U(−a, a), a = ``bound``, so Var = a²/3 whatever the fans.

    Args:
        tensor: any tensor, changed in place.
        generator: source of randomness (None: torch's global generator).
        bound: the half-width a > 0.

    Returns:
        ``tensor``.
    """
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def constant(
    tensor: torch.Tensor, generator: torch.Generator | None = None, value: float = 0.0
) -> torch.Tensor:
    """Constant: w = value everywhere. In a hidden layer all units stay identical.

    Args:
        tensor: any tensor, changed in place.
        generator: unused (for a uniform signature).
        value: the constant.

    Returns:
        ``tensor``.
    """
    with torch.no_grad():
        return tensor.fill_(value)


def zeros(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zeros: w = 0. In a hidden layer all units stay identical (and ReLU nets get no gradient).

    Args:
        tensor: any tensor, changed in place.
        generator: unused (for a uniform signature).

    Returns:
        ``tensor``.
    """
    return constant(tensor, value=0.0)


INITIALIZERS: dict[str, Callable[..., torch.Tensor]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal,
    "normal": normal,
    "uniform": uniform,
    "zeros": zeros,
    "constant": constant,
    # short names: the variant the policy picks
    "glorot": glorot_uniform,
    "he": he_normal,
    "lecun": lecun_normal,
}
"""Registry: initializer name → ``fn(tensor, generator=None, **kwargs) -> tensor``."""

_SYMMETRIC = {"zeros", "constant"}

_POLICY: dict[str, str] = {
    **dict.fromkeys(["sigmoid", "tanh", "softmax", "log_softmax", "linear", "identity"],
                    "glorot_uniform"),
    **dict.fromkeys(
        ["relu", "leaky_relu", "prelu", "rrelu", "elu", "gelu", "silu", "swish", "mish"],
        "he_normal",
    ),
    "softplus": "he_normal",
    "selu": "lecun_normal",
}


def init_for_activation(name: str) -> str:
    """Return the initializer name the ``auto`` policy uses before activation ``name``.

    sigmoid/tanh/softmax/linear → ``glorot_uniform``; ReLU family (relu, leaky_relu,
    prelu, rrelu), elu, gelu, silu/swish, mish, softplus → ``he_normal``; selu →
    ``lecun_normal``.

    Args:
        name: an activation name of the registry.

    Returns:
        A key of :data:`INITIALIZERS`.

    Raises:
        UserError: unknown activation.
    """
    key = str(name).lower()
    if key not in _POLICY:
        raise UserError(
            f"activation: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return _POLICY[key]
