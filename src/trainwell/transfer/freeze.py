"""Freezing and unfreezing layers, with frozen batch-norm statistics held fixed.

Freezing a layer means two things here:

1. its parameters stop learning: ``requires_grad = False`` and any stale ``.grad`` is
   dropped (``None``), so optimizers, which skip parameters without a gradient, leave them
   and their state alone, even momentum methods;
2. its batch-norm modules stop adapting: they normalize with their running statistics and
   never update them. A plain ``model.train()`` would put them back in training mode, so
   each frozen norm module carries a forward pre-hook that switches it to eval mode right
   before every forward pass. This holds in any training loop (the Trainer's or a user's),
   across ``model.train()`` calls, and survives ``copy.deepcopy`` (hook and flag are copied
   with the module).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .layers import named_layers, select_layers

__all__ = ["freeze", "unfreeze", "frozen_layers", "holds_statistics"]

# Attribute set on a norm module while it is frozen; the pre-hook reads it.
_FLAG = "_trainwell_frozen_stats"


def freeze(
    model: nn.Module,
    up_to: int | str | None = None,
    *,
    layers: Iterable[int | str] | None = None,
) -> list[str]:
    """Freeze layers of ``model``: no gradient, and batch-norm statistics held fixed.

    Contract: for every selected layer, each parameter gets ``requires_grad=False`` and
    ``grad=None``; each module in it with running statistics (batch norm) is kept in eval
    mode for every forward pass until :func:`unfreeze`, even after ``model.train()``.
    Layers are those of :func:`trainwell.transfer.named_layers` (``blocks.i``, ``head``).

    Args:
        model: the model to change in place.
        up_to: freeze the first ``k`` layers (int), or all layers up to and including the
            named one (e.g. ``"blocks.1"``). ``None`` with ``layers=None`` freezes all.
        layers: freeze exactly these layers (indices or names) instead.

    Returns:
        The names of the layers frozen.

    Raises:
        UserError: an out-of-range count or an unknown layer name.
    """
    chosen = select_layers(model, up_to, layers, what="freeze")
    for _, layer in chosen:
        for p in layer.parameters():
            p.requires_grad_(False)
            p.grad = None  # a stale gradient would still move momentum-style optimizers
        for m in layer.modules():
            if holds_statistics(m):
                _hold_eval(m)
    return [name for name, _ in chosen]


def unfreeze(
    model: nn.Module,
    up_to: int | str | None = None,
    *,
    layers: Iterable[int | str] | None = None,
) -> list[str]:
    """Unfreeze layers of ``model``: parameters learn again and batch norm adapts again.

    Contract: the inverse of :func:`freeze` on the selected layers; a released norm module
    takes the training mode of ``model`` (``model.training``) at once.

    Args:
        model: the model to change in place.
        up_to: unfreeze the first ``k`` layers, or up to and including the named one;
            ``None`` with ``layers=None`` unfreezes all.
        layers: unfreeze exactly these layers (indices or names) instead.

    Returns:
        The names of the layers unfrozen.

    Raises:
        UserError: an out-of-range count or an unknown layer name.
    """
    chosen = select_layers(model, up_to, layers, what="unfreeze")
    for _, layer in chosen:
        for p in layer.parameters():
            p.requires_grad_(True)
        for m in layer.modules():
            if getattr(m, _FLAG, False):
                setattr(m, _FLAG, False)
                m.train(model.training)
    return [name for name, _ in chosen]


def frozen_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose parameters are all frozen (layers without any are skipped).

    Args:
        model: the model.

    Returns:
        Layer names, in model order, with ``requires_grad=False`` on every parameter.
    """
    out = []
    for name, layer in named_layers(model):
        params = list(layer.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append(name)
    return out


def holds_statistics(module: nn.Module) -> bool:
    """Whether ``module`` keeps running statistics (batch norm, tracked instance norm).

    Args:
        module: any module.

    Returns:
        True when it has a ``running_mean`` buffer that forward passes in training mode update.
    """
    return getattr(module, "running_mean", None) is not None


def _hold_eval(module: nn.Module) -> None:
    if not hasattr(module, _FLAG):
        # Registered once per module; the flag switches it on and off, so repeated
        # freeze/unfreeze cycles do not stack hooks.
        module.register_forward_pre_hook(_keep_eval)
    setattr(module, _FLAG, True)
    module.eval()


def _keep_eval(module: nn.Module, args: tuple) -> None:
    if getattr(module, _FLAG, False) and module.training:
        module.eval()
