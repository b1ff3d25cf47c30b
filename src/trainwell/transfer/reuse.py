"""Reuse the first layers of a trained model for a new task, with a new output layer.

A *source* is where the trained layers come from:

* an ``nn.Module`` with ``blocks`` and ``head`` (``trainwell.nn.MLP``) in memory;
* a run folder ``runs/NAME`` (its newest ``checkpoints/epoch-*.json`` + ``.safetensors``);
  to rebuild its model without ``model=``, pass the MLP settings it was built with as
  ``model_args`` (the front reads them from the run's ``config.toml``:
  :func:`trainwell.cli.runner.run_model_args`);
* a ``.safetensors`` file holding a model ``state_dict`` (keys ``blocks.0.linear.weight``,
  ...; a checkpoint tensor file with ``model/`` prefixes works too).

Weights are always **copied** (cloned tensors, running statistics included) unless
``share=True`` with an in-memory source, where the new model holds the very same block
modules (training one trains the other). Loading checks every name and shape of the reused
blocks and fails with one :class:`~trainwell.errors.UserError` line on a mismatch.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import UserError
from ..nn import MLP
from ..nn.init import glorot_uniform
from ..train.checkpoint import latest_checkpoint, load_checkpoint
from .freeze import unfreeze

__all__ = ["reuse", "load_source", "copy_blocks", "count_blocks"]

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def load_source(source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read the trained weights of a run folder or a ``.safetensors`` file.

    Args:
        source: a run folder (``runs/NAME`` with ``checkpoints/``) or a ``.safetensors`` file.

    Returns:
        ``(state, label)``: the model's ``state_dict`` tensors (no ``model/`` prefix) and a
        short label for messages.

    Raises:
        UserError: ``"source: ..."``: the path is missing, holds no checkpoint, or is not a
            safetensors file.
    """
    path = Path(source)
    if path.is_dir():
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise UserError(
                f"source: {path} holds no checkpoint (checkpoints/epoch-*.json); "
                "name a finished run folder or a .safetensors file"
            )
        tensors, _ = load_checkpoint(ckpt)
        return _model_tensors(tensors), str(path)
    if not path.is_file():
        raise UserError(
            f"source: {path} does not exist; name a run folder (runs/NAME) or a .safetensors file"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"source: {path} is not a readable safetensors file ({e})") from None
    return _model_tensors(tensors), str(path)


def _model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(k.startswith("model/") for k in tensors):  # a trainwell checkpoint tensor file
        return {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    return dict(tensors)


def count_blocks(state: dict[str, torch.Tensor]) -> int:
    """Number of hidden blocks in a model ``state_dict`` (keys ``blocks.<i>.…``).

    Args:
        state: a model state dict.

    Returns:
        ``1 + max(i)`` over the block indices found, 0 without blocks.
    """
    ids = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    return max(ids) + 1 if ids else 0


def copy_blocks(
    state: dict[str, torch.Tensor], target: nn.Module, n_layers: int, label: str = "source"
) -> None:
    """Copy ``blocks.0 .. blocks.{n_layers-1}`` of ``state`` into ``target`` (cloned values).

    Contract: for each reused block, the entries of ``target.blocks[i].state_dict()`` and of
    ``state`` under ``blocks.i.`` must have the same names and shapes; values are copied
    into ``target``'s own tensors, so nothing is shared with ``state``.

    Args:
        state: a model ``state_dict`` (names as ``blocks.0.linear.weight``).
        target: a model with a ``blocks`` container, changed in place.
        n_layers: how many leading blocks to copy.
        label: the source's name for messages.

    Raises:
        UserError: ``n_layers`` beyond either model's blocks, or a name or shape mismatch.
    """
    available = count_blocks(state)
    blocks = getattr(target, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        raise UserError("reuse: the new model has no `blocks`; build it with trainwell.nn.MLP")
    if not 0 <= n_layers <= min(available, len(blocks)):
        raise UserError(
            f"n_layers: {n_layers} is out of range; {label} has {available} hidden "
            f"layers and the new model {len(blocks)}; reuse at most {min(available, len(blocks))}"
        )
    for i in range(n_layers):
        own = blocks[i].state_dict()
        theirs = {
            k[len(f"blocks.{i}.") :]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")
        }
        for name in [*own, *(n for n in theirs if n not in own)]:  # model order
            key = f"blocks.{i}.{name}"
            if name not in theirs:
                raise UserError(
                    f"reuse: layer {key} is in the new model but not in {label}; build the new "
                    "model's reused layers like the source (same batch_norm and bias)"
                )
            if name not in own:
                raise UserError(
                    f"reuse: layer {key} of {label} has no place in the new model; build the new "
                    "model's reused layers like the source (same batch_norm and bias)"
                )
            if tuple(theirs[name].shape) != tuple(own[name].shape):
                raise UserError(
                    f"reuse: layer {key} has shape {tuple(theirs[name].shape)} in {label} but "
                    f"{tuple(own[name].shape)} in the new model; give the new model the same "
                    f"sizes for the reused layers, or reuse fewer (n_layers={i})"
                )
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(theirs[name])  # copy_ into the model's own storage: never shared


def reuse(
    source: nn.Module | str | Path,
    n_layers: int | None = None,
    new_head: int | nn.Module | None = None,
    *,
    share: bool = False,
    model: nn.Module | None = None,
    generator: torch.Generator | None = None,
    model_args: Mapping[str, object] | None = None,
) -> nn.Module:
    """Build a model whose first ``n_layers`` hidden blocks come from ``source``.

    Contract: the result's ``blocks[:n_layers]`` hold ``source``'s trained values (weights,
    biases and batch-norm statistics), as copies unless ``share``; its head is new. The
    result is fully trainable; freeze it with :func:`trainwell.transfer.freeze`.

    Two ways to say what the new model is:

    * ``model=`` a model you built for the new task (e.g. ``tw.nn.MLP(...)``, possibly
      deeper than ``n_layers``): the reused blocks are copied into it, checking names and
      shapes, and it is returned (its head replaced by ``new_head`` if given);
    * no ``model``: the source's architecture truncated to ``n_layers`` blocks, with
      ``new_head`` on top. For a file source this needs ``model_args``.

    Args:
        source: an ``nn.Module`` (with ``blocks``), a run folder or a ``.safetensors`` file.
        n_layers: hidden blocks to reuse (default: all of the source's).
        new_head: the new output layer: an ``int`` (number of outputs; a Glorot-uniform
            ``nn.Linear`` with zero bias) or a module. Required without ``model`` unless all
            blocks are reused and the source's head is wanted as well.
        share: with an in-memory source and no ``model``, reuse the block modules
            themselves (no copy). Ignored for file sources, whose tensors are fresh anyway.
        model: the new model to copy the reused blocks into.
        generator: randomness for a new head built from an ``int``.
        model_args: for a file source without ``model``: the settings its MLP was built
            with (``kind``, ``activation``, ``init``, ``dropout``, ``output_activation``;
            widths and batch norm are read from the tensors).

    Returns:
        The new model (``model`` itself when given).

    Raises:
        UserError: an unreadable source, ``n_layers`` out of range, a name or shape that does
            not match, or a missing ``new_head``.
    """
    if share and model is not None:
        raise UserError(
            "reuse: share=True cannot copy into model=; leave model out to share layers"
        )
    if isinstance(source, nn.Module):
        state, settings, label = source.state_dict(), None, "the source model"
        available = len(_blocks_of(source, "source"))
    else:
        state, label = load_source(source)
        settings = dict(model_args or {})
        available = count_blocks(state)
    n = available if n_layers is None else n_layers
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= available:
        raise UserError(
            f"n_layers: {n_layers!r} is out of range; {label} has {available} hidden "
            f"layers; choose 0..{available}"
        )
    if model is not None:
        copy_blocks(state, model, n, label)
        if new_head is not None:
            width = _width_after(_blocks_of(model, "new"), getattr(model.head, "in_features", 0))
            model.head = _make_head(new_head, width, generator)
        return model
    if isinstance(source, nn.Module):
        return _from_module(source, n, new_head, share, generator)
    return _from_state(state, settings or {}, label, n, new_head, available, generator)


def _from_module(
    source: nn.Module,
    n: int,
    new_head: int | nn.Module | None,
    share: bool,
    generator: torch.Generator | None,
) -> nn.Module:
    blocks = _blocks_of(source, "source")
    if n < len(blocks) and type(source).__name__ != "MLP":
        raise UserError(
            f"reuse: cutting a {type(source).__name__} after {n} blocks is only supported for "
            "trainwell.nn.MLP; pass model= a new model to copy the blocks into"
        )
    # Deepcopy everything but, when sharing, map the reused blocks to themselves.
    memo = {id(b): b for b in list(blocks)[:n]} if share else {}
    new = copy.deepcopy(source, memo)
    new.blocks = nn.ModuleList(list(_blocks_of(new, "source"))[:n])
    if new_head is None:
        if n < len(blocks):
            raise UserError(
                f"new_head: reusing {n} of {len(blocks)} layers needs a new output layer; "
                "give new_head=<number of outputs of the new task>"
            )
    else:
        width = (
            _width_after(new.blocks, _input_width(source))
            if not isinstance(new_head, nn.Module)
            else 0
        )
        new.head = _make_head(new_head, width, generator)
    if not share:  # a fresh copy starts trainable; shared blocks keep the source's state
        unfreeze(new)
    return new


def _from_state(
    state: dict[str, torch.Tensor],
    settings: Mapping[str, Any],
    label: str,
    n: int,
    new_head: int | nn.Module | None,
    available: int,
    generator: torch.Generator | None,
) -> MLP:
    if not settings:
        raise UserError(
            f"reuse: {label} does not record how its model was built; pass "
            "model=tw.nn.MLP(...) built like the source, or model_args= its MLP settings"
        )
    if settings.get("kind", "mlp") != "mlp":
        raise UserError(
            f"reuse: {label} is a {settings.get('kind')!r} run; pass model= to copy into"
        )
    if n == 0 and "blocks.0.linear.weight" not in state:
        raise UserError(f"reuse: {label} has no hidden layers to reuse")
    hidden = [int(state[f"blocks.{i}.linear.weight"].shape[0]) for i in range(n)]
    in_features = int(state["blocks.0.linear.weight"].shape[1]) if available else None
    if new_head is None:
        if n < available or "head.weight" not in state:
            raise UserError(
                f"new_head: reusing {n} of {available} layers of {label} needs a new output "
                "layer; give new_head=<number of outputs of the new task>"
            )
        out_features = int(state["head.weight"].shape[0])
    else:
        out_features = new_head if isinstance(new_head, int) else 1
    width_in = in_features if in_features is not None else int(state["head.weight"].shape[1])
    model = MLP(
        in_features=width_in,
        hidden=hidden,
        out_features=out_features,
        activation=settings.get("activation", "relu"),
        init=settings.get("init", "auto"),
        dropout=float(settings.get("dropout", 0.0)),
        batch_norm="blocks.0.norm.running_mean" in state,
        output_activation=settings.get("output_activation"),
        generator=generator,
    )
    copy_blocks(state, model, n, label)
    if new_head is None:
        head = model.head
        assert isinstance(head, nn.Linear), "MLP builds a Linear head"
        with torch.no_grad():
            head.weight.copy_(state["head.weight"])
            if "head.bias" in state:
                head.bias.copy_(state["head.bias"])
    elif not isinstance(new_head, int):
        model.head = _make_head(new_head, hidden[-1] if hidden else width_in, generator)
    return model


def _blocks_of(model: nn.Module, who: str) -> nn.ModuleList | nn.Sequential:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        raise UserError(f"reuse: the {who} model has no `blocks`; use trainwell.nn.MLP models")
    return blocks


def _width_after(blocks: nn.ModuleList | nn.Sequential, fallback: int) -> int:
    """Width feeding the head: the last block's linear output, or ``fallback`` without blocks."""
    if len(blocks) == 0:
        return fallback
    linear = getattr(blocks[len(blocks) - 1], "linear", None)
    if not isinstance(linear, nn.Linear):
        raise UserError("reuse: cannot tell the width feeding the head; pass new_head as a module")
    return linear.out_features


def _input_width(model: nn.Module) -> int:
    """The input width of a model with blocks (its first linear layer) or its head."""
    blocks = _blocks_of(model, "source")
    linear = getattr(blocks[0], "linear", None) if len(blocks) else getattr(model, "head", None)
    if not isinstance(linear, nn.Linear):
        raise UserError("reuse: cannot tell the model's input width; pass new_head as a module")
    return linear.in_features


def _make_head(new_head: int | nn.Module, in_features: int, generator: torch.Generator | None) -> nn.Module:
    if isinstance(new_head, nn.Module):
        return new_head
    if isinstance(new_head, bool) or not isinstance(new_head, int) or new_head < 1:
        raise UserError(
            f"new_head: expected a positive number of outputs or a module, got {new_head!r}"
        )
    head = nn.Linear(in_features, new_head)
    with torch.no_grad():
        glorot_uniform(head.weight, generator)  # Glorot for the output layer, as MLP's policy
        head.bias.zero_()
    return head
