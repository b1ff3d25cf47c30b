"""Strict field types and the bounds every config value must stay inside.

A value that passes validation must be usable: finite, of the kind the field describes (the
TOML ``true`` is not the number 1, ``1e9`` is not an integer), and small enough to build on
one machine. Sizes are checked here, before anything is allocated, so ``model.depth = 1e6``
or ``hidden = [16] * 5000`` are refused in microseconds instead of hanging the builder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict

from ..nn import ACTIVATIONS
from ..nn.init_policy import parse_init
from ..optim import OPTIMIZERS
from ..optim.schedule_registry import SCHEDULES

__all__ = ["Bool", "Float", "Int", "Name", "Text", "OptionalActivation", "Activation",
           "Initializer", "BiasInitializer", "Target", "OptimizerName", "ScheduleName", "check_free_form", "check_model_size",
           "mlp_parameters", "cnn_parameters", "MAX_PARAMETERS", "MAX_UNITS", "MAX_LIST",
           "MAX_SAMPLES", "MAX_NAME", "MAX_TEXT"]

MAX_PARAMETERS = 250_000_000  # 1 GB of float32 weights; Adam's two moments make it 3 GB
MAX_UNITS = 65_536  # units in one layer (width, a hidden entry, out_features, channels)
MAX_LIST = 1_000  # entries of hidden / channels / classes; layers past this are a typo
MAX_SAMPLES = 10_000_000  # generated samples; mnist1d's 40 floats each make 1.6 GB
MAX_NAME = 100  # characters of a run name (a folder name; most filesystems allow 255 bytes)
MAX_TEXT = 4_096  # characters of a path or other free text (PATH_MAX on Linux)
_MAX_DEPTH = 4  # nesting of data.options / schedule.params tables
_MAX_ENTRIES = 1_000  # values in data.options / schedule.params, all levels together
_MAX_FREE_INT = 10**12  # any integer in options/params; bigger ones are typos or attacks


def _number(value: Any) -> Any:
    # pydantic's lax float takes true as 1.0 and "1e-3" as 0.001; a config is typed TOML,
    # so a boolean or a string where a number belongs is a mistake worth naming.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    if isinstance(value, str):
        raise ValueError("expected a number, got a string; write it without quotes")
    return value


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("holds a NUL byte; remove it")
    return value


def _name(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if any(c in value for c in "/\\") or value in (".", ".."):
        raise ValueError("is a folder name and must not hold '/' or '\\' or be '.' or '..'; "
                         "use --out to choose another folder")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("holds a control character; use letters, digits, '-' and '_'")
    return value


Float = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(max_length=MAX_TEXT), AfterValidator(_text)]
Name = Annotated[str, Strict(), Field(max_length=MAX_NAME), AfterValidator(_text),
                 AfterValidator(_name)]


def _registered(
    kind: str, names: Callable[[], Iterable[str]], extra: tuple[str, ...] = ()
) -> AfterValidator:
    def check(value: str) -> str:
        known = sorted({*names(), *extra})
        if value.lower() not in known and value not in known:
            raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(known)}")
        return value
    return AfterValidator(check)


def _none_word(value: Any) -> Any:
    # The field's description says "none = logits"; --set output_activation=none arrives
    # as the bare word "none", which means the same as leaving it unset.
    return None if isinstance(value, str) and value.lower() == "none" else value


Activation = Annotated[Text, _registered("activation", ACTIVATIONS.keys)]
OptionalActivation = Annotated[Activation | None, BeforeValidator(_none_word)]
def _init_spec(allow_auto: bool) -> AfterValidator:
    def check(value: str) -> str:
        try:
            parse_init(value, argument="initializer", allow_auto=allow_auto)
        except ValueError as e:  # "initializer: ..." -> pydantic prefixes the field path
            raise ValueError(str(e).split(": ", 1)[-1]) from None
        return value
    return AfterValidator(check)


# "he_normal", "auto", or a spec with a number: "constant:0.1", "uniform:0.05", "normal:0.5"
Initializer = Annotated[Text, _init_spec(allow_auto=True)]
BiasInitializer = Annotated[Text, _init_spec(allow_auto=False)]
# "package.module:callable", importable; checked for importability when the run is built
Target = Annotated[Text, AfterValidator(lambda v: _target_form(v))]


def _target_form(value: str) -> str:
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr or not all(
            part.isidentifier() for part in [*module.split("."), *attr.split(".")]):
        raise ValueError(f"expected \"package.module:callable\", got {value!r}")
    return value
OptimizerName = Annotated[Text, _registered("optimizer", OPTIMIZERS.keys)]
ScheduleName = Annotated[Text, _registered("schedule", SCHEDULES.keys, ("performance",))]


def check_free_form(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """Bound a free-form table (``data.options``, ``schedule.params``).

    Its values reach functions that check their own arguments, but nothing there expects
    ``inf``, a string with NUL, ``10**30`` or a table nested a thousand deep.

    Raises:
        ValueError: naming the key, e.g. ``"noise: must be finite, got inf"``.
    """
    count = 0

    def walk(value: Any, key: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > _MAX_ENTRIES:
            raise ValueError(f"more than {_MAX_ENTRIES} values; this table takes a few arguments")
        if depth > _MAX_DEPTH:
            raise ValueError(f"{key}: nested deeper than {_MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: must be finite, got {value}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_FREE_INT:
            raise ValueError(f"{key}: {value} is past the limit of {_MAX_FREE_INT:.0e}")
        if isinstance(value, str) and (len(value) > MAX_TEXT or "\x00" in value):
            raise ValueError(f"{key}: a text of at most {MAX_TEXT} characters without NUL")
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k), depth + 1)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]", depth + 1)

    walk(table, "", 0)
    return table


def mlp_parameters(in_features: int, hidden: list[int], out_features: int,
                   batch_norm: bool = False) -> int:
    """Weights + biases (+ batch-norm scale and shift) of an MLP, counted without building it."""
    sizes = [in_features, *hidden, out_features]
    linear = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    return linear + (2 * sum(hidden) if batch_norm else 0)


def cnn_parameters(in_channels: int, channels: list[int], kernel_size: int) -> int:
    """Weights + biases of the conv blocks of a CNN (its head depends on the image size)."""
    sizes = [in_channels, *channels]
    return sum(a * b * kernel_size * kernel_size + b for a, b in zip(sizes, sizes[1:]))


def check_model_size(kind: str, hidden: list[int], channels: list[int], kernel_size: int,
                     batch_norm: bool) -> None:
    """Refuse a model whose parameters between its own layers already pass the limit.

    The input and output sizes come from the data, known only later; with one input and one
    output unit this is a lower bound, so a refusal here is always right.

    Raises:
        ValueError: with the estimate and :data:`MAX_PARAMETERS`.
    """
    if kind == "mlp":
        count = mlp_parameters(1, hidden, 1, batch_norm)
        what = f"hidden sizes {hidden[:4]}{'...' if len(hidden) > 4 else ''}"
    else:
        count = cnn_parameters(1, channels, kernel_size)
        what = f"channels {channels[:4]} with kernel_size {kernel_size}"
    if count > MAX_PARAMETERS:
        raise ValueError(f"{what} make at least {count:,} parameters, past the limit of "
                         f"{MAX_PARAMETERS:,}; use fewer or narrower layers")
