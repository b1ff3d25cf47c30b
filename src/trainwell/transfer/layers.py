"""Layers of a model as an ordered list, and selecting some of them by index or name.

Transfer learning talks about "the first k layers" and "the layers up to ``blocks.1``". This
module fixes what a *layer* is, once, for freezing, discriminative learning rates and
gradual unfreezing alike:

* a model with a ``blocks`` container (``trainwell.nn.MLP``): each block is one layer, named
  ``blocks.0``, ``blocks.1``, ..., followed by the model's other direct children in their
  registration order (``head``, ...);
* an ``nn.Sequential`` / ``nn.ModuleList``: its children, named ``"0"``, ``"1"``, ...;
* any other module: its direct children.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from ..errors import UserError

__all__ = ["named_layers", "select_layers"]


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers, input side first, as ``(name, module)`` pairs.

    Args:
        model: a ``trainwell.nn.MLP`` (layers ``blocks.i`` then ``head``), an
            ``nn.Sequential``/``nn.ModuleList``, or any module (its direct children).

    Returns:
        The ordered list of layers; names are paths usable with ``model.get_submodule``.
    """
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        out = [(f"blocks.{i}", b) for i, b in enumerate(blocks)]
        out += [(name, m) for name, m in model.named_children() if name != "blocks"]
        return out
    if isinstance(model, (nn.Sequential, nn.ModuleList)):
        return [(str(i), m) for i, m in enumerate(model)]
    return list(model.named_children())


def select_layers(
    model: nn.Module,
    up_to: int | str | None = None,
    layers: Iterable[int | str] | None = None,
    *,
    what: str = "up_to",
) -> list[tuple[str, nn.Module]]:
    """Pick layers of ``model`` by a prefix (``up_to``) or an explicit list (``layers``).

    Contract: ``up_to=k`` (int) selects the first ``k`` layers; ``up_to="blocks.1"`` selects
    every layer up to and including that name; ``layers=[0, "head"]`` selects exactly those
    (indices into :func:`named_layers`, or names); neither selects every layer.

    Args:
        model: the model.
        up_to: a count of leading layers, or the name of the last layer to select.
        layers: explicit layer indices or names (exclusive with ``up_to``).
        what: the argument name used in error messages.

    Returns:
        The selected ``(name, module)`` pairs in model order.

    Raises:
        UserError: a count out of range or an unknown name (the message lists the names).
    """
    all_layers = named_layers(model)
    names = [n for n, _ in all_layers]
    if up_to is not None and layers is not None:
        raise UserError(f"{what}: give up_to or layers, not both")
    if up_to is None and layers is None:
        return all_layers
    if up_to is not None:
        if isinstance(up_to, bool) or not isinstance(up_to, (int, str)):
            raise UserError(f"{what}: expected a layer count or name, got {up_to!r}")
        if isinstance(up_to, int):
            if not 0 <= up_to <= len(all_layers):
                raise UserError(
                    f"{what}: {up_to} is out of range; the model has {len(all_layers)} layers {names}"
                )
            return all_layers[:up_to]
        return all_layers[: _index_of(up_to, names, what) + 1]
    assert layers is not None
    wanted = {_index_of(x, names, what) for x in _as_list(layers)}
    return [pair for i, pair in enumerate(all_layers) if i in wanted]


def _as_list(layers: Iterable[int | str] | int | str) -> Sequence[int | str]:
    if isinstance(layers, (int, str)):
        return [layers]
    return list(layers)


def _index_of(key: int | str, names: list[str], what: str) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise UserError(f"{what}: expected a layer index or name, got {key!r}")
    if isinstance(key, int):
        if not -len(names) <= key < len(names):
            raise UserError(
                f"{what}: layer index {key} is out of range; the model has {len(names)} layers {names}"
            )
        return key % len(names)
    if key not in names:
        raise UserError(f"{what}: no layer named {key!r}; the model's layers are {names}")
    return names.index(key)
