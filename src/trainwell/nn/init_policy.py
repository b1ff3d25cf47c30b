"""Initializer specs (``"uniform:0.05"``) and ``apply_init``: which initializer each layer gets.

A spec is a name of :data:`trainwell.nn.init.INITIALIZERS` or ``"NAME:NUMBER"`` for the
three initializers that take a number: ``constant:V`` (w = V), ``uniform:A`` (U(−A, A),
A > 0) and ``normal:S`` (N(0, S²), S > 0). :func:`apply_init` gives the hidden layers
``init`` (``"auto"``: by activation, see :func:`~trainwell.nn.init.init_for_activation`),
the head ``head_init`` and the hidden biases ``bias_init``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from .activations import name_of_activation
from .init import _SYMMETRIC, INITIALIZERS, glorot_uniform, init_for_activation

__all__ = ["InitSpec", "apply_init", "parse_init"]


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
            f"init: {key!r} initialization of hidden layer(s) {', '.join(symmetric)}: "
            "all neurons of such a layer compute the same output and receive the same "
            "gradient, so they stay identical during training (the symmetry problem); "
            "use a random initializer such as 'auto'",
            UserWarning,
            stacklevel=2,
        )
    return model
