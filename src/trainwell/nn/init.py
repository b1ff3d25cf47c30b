"""Weight initializers, the init-by-activation policy, and ``apply_init``.

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

Spec strings (what ``apply_init``'s ``policy``, ``bias_init`` and ``head_init`` take):
a name above, or ``"constant:V"`` (w = V), ``"uniform:A"`` (U(−A, A), A > 0) or
``"normal:S"`` (N(0, S²), S > 0); see :func:`parse_init`.

Every initializer is ``fn(tensor, generator=None, ...) -> tensor``, works in place and
draws only from ``generator`` when one is given, so the same seed gives bit-identical
weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from .activations import ACTIVATIONS, name_of_activation

__all__ = [
    "INITIALIZERS",
    "InitSpec",
    "apply_init",
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
    "parse_init",
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
            f"model.init: cannot compute fans of a tensor of shape {tuple(tensor.shape)}; "
            "initializers with fans apply to Linear/Conv weights (2+ dimensions)"
        )
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _uniform_var(tensor: torch.Tensor, var: float, generator: torch.Generator | None):
    bound = math.sqrt(3.0 * var)  # U(−a, a) has variance a²/3
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def _normal_var(tensor: torch.Tensor, var: float, generator: torch.Generator | None):
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
    if mode == "fan_in":
        fan = n_in
    elif mode == "fan_avg":
        fan = (n_in + n_out) / 2.0
    elif mode == "fan_out":
        fan = n_out
    else:
        raise UserError(
            f"model.init: unknown He mode {mode!r}; choose one of ['fan_avg', 'fan_in', 'fan_out']"
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
    **dict.fromkeys(["sigmoid", "tanh", "softmax", "linear", "identity"], "glorot_uniform"),
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
            f"model.activation: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return _POLICY[key]


# Initializers that take one number in a spec ("uniform:0.05"): name → (keyword, letter
# in messages, lower limit (exclusive) or None for any finite number, what it means).
_PARAMETERS: dict[str, tuple[str, str, float | None, str]] = {
    "constant": ("value", "V", None, "the value V of w = V"),
    "uniform": ("bound", "A", 0.0, "the half-width A > 0 of U(−A, A)"),
    "normal": ("std", "S", 0.0, "the standard deviation S > 0 of N(0, S²)"),
}
# A bias is 1-D: it has no fans, so only the fan-free initializers apply to it.
_FAN_FREE = ("zeros", "constant", "uniform", "normal")


@dataclass(frozen=True)
class InitSpec:
    """A parsed initializer spec: a registry name and its optional number.

    Calling it initializes a tensor in place: ``InitSpec("uniform", 0.05)(w, generator)``
    draws w ~ U(−0.05, 0.05). ``str(spec)`` gives the spec string back.

    Attributes:
        name: a key of :data:`INITIALIZERS`, or ``"auto"`` (the policy; not callable).
        value: the number after the colon (``None``: the initializer's default).
    """

    name: str
    value: float | None = None

    def __call__(
        self, tensor: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Initialize ``tensor`` in place with this spec; return it."""
        fn = INITIALIZERS[self.name]
        if self.value is None:
            return fn(tensor, generator=generator)
        return fn(tensor, generator=generator, **{_PARAMETERS[self.name][0]: self.value})

    def __str__(self) -> str:
        # repr is the shortest text that reads back as the same float: exact round trip.
        return self.name if self.value is None else f"{self.name}:{self.value!r}"


def parse_init(spec: str, argument: str = "init", allow_auto: bool = True) -> InitSpec:
    """Parse an initializer spec ``"NAME"`` or ``"NAME:NUMBER"`` into an :class:`InitSpec`.

    Grammar: a key of :data:`INITIALIZERS` (case-insensitive), or ``"auto"`` when
    ``allow_auto``; only ``constant:V`` (any finite V), ``uniform:A`` (A > 0, U(−A, A))
    and ``normal:S`` (S > 0, N(0, S²)) take a number, which defaults to 0, 1 and 1.

    Args:
        spec: the spec string, e.g. ``"he_normal"``, ``"constant:-1.0"``, ``"uniform:0.05"``.
        argument: the caller's argument name, used to start error messages.
        allow_auto: whether ``"auto"`` (the init-by-activation policy) is accepted.

    Returns:
        The parsed spec.

    Raises:
        UserError: not a string, an unknown name, a number on a name that takes none, a
            number that does not parse, is not finite or is out of range.

    Example:
        >>> parse_init("normal:0.5")
        InitSpec(name='normal', value=0.5)
    """
    if not isinstance(spec, str):
        raise UserError(
            f"{argument}: expected an initializer spec such as 'he_normal' or 'constant:0.1', "
            f"got {spec!r}"
        )
    name, colon, number = (part.strip() for part in spec.strip().partition(":"))
    name = name.lower()
    if name == "auto" and allow_auto and not colon:
        return InitSpec("auto")
    if name not in INITIALIZERS:
        choices = [*(["auto"] if allow_auto else []), *sorted(INITIALIZERS)]
        choices += [f"{n}:{k[1]}" for n, k in _PARAMETERS.items()]
        raise UserError(f"{argument}: unknown initializer {spec!r}; choose one of {choices}")
    if not colon:
        return InitSpec(name)
    if name not in _PARAMETERS:
        raise UserError(
            f"{argument}: {name!r} takes no number, got {spec!r}; only "
            f"{', '.join(_PARAMETERS)} do (e.g. 'uniform:0.05')"
        )
    _, _, lowest, meaning = _PARAMETERS[name]
    try:
        value = float(number)
    except ValueError:
        raise UserError(
            f"{argument}: {spec!r} needs a number after the colon, {meaning}, got {number!r}; "
            f"write e.g. '{name}:0.5'"
        ) from None
    if not math.isfinite(value) or (lowest is not None and value <= lowest):
        raise UserError(
            f"{argument}: {spec!r} needs {meaning}, got {value!r}; write e.g. '{name}:0.5'"
        )
    return InitSpec(name, value)


def _bias_spec(spec: str) -> InitSpec:
    parsed = parse_init(spec, "bias_init", allow_auto=False)
    if parsed.name not in _FAN_FREE:
        raise UserError(
            f"bias_init: {spec!r} scales by a layer's fans, which a bias (1-D) does not have; "
            "use zeros, constant:V, uniform:A or normal:S"
        )
    return parsed


def _guess_activation(model: nn.Module) -> str:
    # A user's own model: take the first activation module found; none means linear.
    for module in model.modules():
        found = name_of_activation(module)
        if found is not None:
            return found
    return "linear"


def apply_init(
    model: nn.Module,
    policy: str = "auto",
    generator: torch.Generator | None = None,
    activation: str | None = None,
    *,
    bias_init: str = "zeros",
    head_init: str | None = None,
) -> nn.Module:
    """Initialize every Linear/Conv weight and bias of ``model`` by spec strings.

    The head is the last weighted layer (in registration order); the others are hidden.

    - Hidden weights: ``policy="auto"`` gives :func:`init_for_activation` of the activation
      (``activation``, else ``model.activation_name``, else the first activation module in
      the model); any other spec (see :func:`parse_init`) applies as written.
    - Head weight: ``head_init`` when given (``"auto"`` means ``glorot_uniform``); when None,
      ``glorot_uniform`` under ``policy="auto"`` (the head feeds softmax or a linear output)
      and ``policy`` itself otherwise, so a named policy covers every layer.
    - Hidden biases: ``bias_init`` (zeros, ``constant:V``, ``uniform:A`` or ``normal:S``);
      ``constant:-1`` gives every hidden unit bias −1 (ReLUs that start dead). The head's
      bias starts at zero. Norm layers are left as torch builds them (γ = 1, β = 0).

    Modules are visited in registration order, weight then bias, so with a ``generator``
    the result is bit-identical for the same seed (a zero bias draws nothing, so adding
    ``bias_init`` changed no existing seeded weights).

    Args:
        model: the module to initialize in place.
        policy: ``"auto"`` or an initializer spec (``"he_normal"``, ``"uniform:0.05"`` …).
        generator: source of randomness (None: torch's global generator).
        activation: the hidden activation name, overriding what the model says.
        bias_init: spec for the hidden layers' biases.
        head_init: spec for the head's weight, or None (see above).

    Returns:
        ``model``.

    Raises:
        UserError: a bad spec (unknown name, bad number), a fan-based ``bias_init``, an
            unknown activation.

    Warns:
        UserWarning: a zero or constant init hits hidden layers (named by module path):
            their units compute the same output and get the same gradient forever.
    """
    spec = parse_init(policy, "init")
    bias = _bias_spec(bias_init)
    head = None if head_init is None else parse_init(head_init, "head_init")
    key = str(spec)
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
    ]
    if spec.name == "auto":
        act = activation or getattr(model, "activation_name", None) or _guess_activation(model)
        hidden_fn: Callable[..., torch.Tensor] = INITIALIZERS[init_for_activation(act)]
    else:
        hidden_fn = spec
    if head is not None:
        head_fn: Callable[..., torch.Tensor] = glorot_uniform if head.name == "auto" else head
    else:
        head_fn = glorot_uniform if spec.name == "auto" else hidden_fn
    symmetric: list[str] = []
    for i, (name, module) in enumerate(layers):
        is_head = i == len(layers) - 1
        (head_fn if is_head else hidden_fn)(module.weight, generator=generator)
        if module.bias is not None:
            if is_head:
                with torch.no_grad():
                    module.bias.zero_()
            else:
                bias(module.bias, generator=generator)
        if spec.name in _SYMMETRIC and not is_head:
            symmetric.append(name or "<model>")
    if symmetric:
        warnings.warn(
            f"model.init: {key!r} initialization of hidden layer(s) {', '.join(symmetric)}: "
            "all neurons of such a layer compute the same output and receive the same "
            "gradient, so they stay identical during training (the symmetry problem); "
            "use a random initializer such as 'auto'",
            UserWarning,
            stacklevel=2,
        )
    return model
