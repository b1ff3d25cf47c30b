"""Swap the hidden activation modules of any model (a user's own included) for another.

A user's model keeps its own ``forward``, so trainwell cannot change an activation written
there as a function call (``torch.sigmoid(x)``). Where the activation is a *module* — an
``nn.Sigmoid``/``nn.Tanh``/… or the user's own class that computes one — it is an attribute
of the model and can be replaced like any submodule. :func:`activation_modules` finds them:
a registered activation type, or a parameterless leaf module whose output on a test grid is
one of :data:`KNOWN` (so ``class Squash(nn.Module): 1 / (1 + exp(-x))`` is a sigmoid,
whatever its name). :func:`swap_activations` replaces the hidden ones; an activation that
runs on the output layer's values (the head's) stays, since it decides what the loss sees.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation, name_of_activation

__all__ = ["KNOWN", "activation_modules", "computes", "swap_activations"]

# Element-wise functions a custom activation module is compared against (on GRID).
KNOWN: dict[str, Any] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "silu": F.silu,
    "elu": F.elu,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
}
# −8…8 covers the tails where sigmoid and tanh saturate and both sides of ReLU's kink; two
# rows so a module that mixes samples (softmax over dim 0, batch statistics) does not match.
GRID = torch.linspace(-8.0, 8.0, 161).reshape(1, -1).repeat(2, 1)
GRID[1] *= 0.5
NOT_ELEMENTWISE = ("softmax", "log_softmax", "identity", "linear")  # never swapped
MATCH_ATOL = 1e-4  # float32 round-off of a written-out formula (1/(1+e^-x)) is ~1e-7


def computes(module: nn.Module) -> str | None:
    """The activation ``module`` computes: its registry name for a registered type, else the
    :data:`KNOWN` function its output matches on :data:`GRID` (a parameterless leaf module
    only), else None."""
    name = name_of_activation(module)
    if name is not None:
        return name
    if next(module.children(), None) is not None or next(module.parameters(), None) is not None:
        return None
    if isinstance(module, nn.modules.dropout._DropoutNd | nn.Identity | nn.Flatten):
        return None
    try:
        with torch.no_grad():
            out = module(GRID.clone())
    except Exception:  # noqa: BLE001 - not an element-wise function of one tensor
        return None
    if not isinstance(out, torch.Tensor) or out.shape != GRID.shape:
        return None
    for key, fn in KNOWN.items():
        if torch.allclose(out.float(), fn(GRID), atol=MATCH_ATOL, rtol=0.0):
            return key
    return None


def activation_modules(
    model: nn.Module, sample: torch.Tensor | None = None
) -> list[tuple[str, nn.Module, str]]:
    """``(dotted name, module, activation)`` of every hidden activation module of ``model``.

    With ``sample`` (a batch of inputs), a module that runs after the model's last weighted
    layer (the head) is left out: it shapes the output the loss reads. Without it, the
    activation module registered right after the last weighted layer is left out instead.
    """
    found = [(n, m, a) for n, m in model.named_modules()
             if n and (a := computes(m)) and a not in NOT_ELEMENTWISE]
    weighted = [m for m in model.modules() if _weight_2d(m)]
    if not found or not weighted:
        return found
    head = weighted[-1]
    if sample is not None:
        order: list[nn.Module] = []
        watched = {id(m): m for m in [head, *(m for _, m, _ in found)]}.values()
        hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod)) for m in watched]
        was = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(sample)
        except Exception:  # noqa: BLE001 - fall back to the registration order
            order = []
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
        if any(m is head for m in order):
            last = max(i for i, m in enumerate(order) if m is head)
            after = {id(m) for m in order[last + 1:]}
            return [(n, m, a) for n, m, a in found if id(m) not in after]
    # no forward: an activation registered after the head is taken for the head's
    names = [n for n, _ in model.named_modules()]
    at = next(i for i, (_, m) in enumerate(model.named_modules()) if m is head)
    later = set(names[at + 1:])
    return [(n, m, a) for n, m, a in found if n not in later]


def _weight_2d(module: nn.Module) -> bool:
    """The module owns a ``weight`` parameter of 2+ dimensions (Linear, Conv)."""
    w = module._parameters.get("weight")
    return isinstance(w, nn.Parameter) and w.dim() >= 2


def swap_activations(
    model: nn.Module, new: str, sample: torch.Tensor | None = None
) -> list[str]:
    """Replace every hidden activation module of ``model`` (see :func:`activation_modules`)
    by a fresh ``activation(new)``, in place; return the dotted names replaced."""
    done = []
    for name, old, _ in activation_modules(model, sample):
        # every slot that holds this module (a user may reuse one instance for all layers)
        slots = [(parent, attr) for parent in model.modules()
                 for attr, child in parent._modules.items() if child is old]  # no dedup
        for parent, attr in slots:
            setattr(parent, attr, activation(new))
        done.append(name)
    return done
