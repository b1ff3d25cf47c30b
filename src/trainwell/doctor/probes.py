"""Probes: per-layer gradient, weight and activation statistics from sampled steps.

This is the *measure* step of the doctor. A :class:`Probe` walks a module tree once,
finds the layers with weights (modules owning a ``weight`` of 2+ dimensions: Linear,
Conv) and the activation module that follows each one, and on a probe step records, per
layer ℓ with weight W and gradient g = ∂J/∂W:

- ``grad_norm`` ‖g‖₂ (pre-scaled by max|g|, summed in float64: a vanishing gradient of
  ~1e-32 squares to ~1e-64, which underflows float32 to an exact 0) and ``grad_abs_mean``;
- ``grad_zero_share`` the share of entries of g that are exactly 0;
- ``weight_norm`` ‖W‖₂ and ``update_ratio`` ‖ΔW‖/‖W‖ over the optimizer step;
- ``unit_spread`` ‖W − mean_row(W)‖/‖W‖ (0 when all units are identical: symmetry),
  on the first probe step only;
- ``act_mean``/``act_std`` of the activation output, and a 24-bin histogram of it (the
  activation module's output when it is one of :mod:`trainwell.nn.activations`' types;
  otherwise the next weighted layer's input — or the model's output after the head — with
  ``act_kind``, the activation inferred from it by :mod:`trainwell.doctor.actstats`, so
  ``F.relu``/``torch.sigmoid`` in ``forward`` and custom modules are measured too; the
  record's ``output_activation`` is what ran on the head's output: the activation module
  that ran right after the head layer, else the activation inferred from the model's
  output, with ``head_measured``);
- ``dead_share``: ReLU-family units that output exactly 0 for every sample of the batch;
- ``saturated_share``: sigmoid/tanh entries with |z| ≥ 5 or output within 0.01 of an
  asymptote.

Forward hooks exist only while a probe step is *armed*: they are registered before the
probed forward pass and removed right after it, so other steps pay nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..nn.activations import name_of_activation
from .actstats import (  # noqa: F401 (HIST_BINS, _activation_stats: re-exported)
    HIST_BINS,
    activation_stats,
    infer_activation,
    infer_head,
)

_activation_stats = activation_stats  # the old private name

__all__ = ["LayerInfo", "Probe", "describe_layers", "probe_schedule"]


@dataclass
class LayerInfo:
    """A layer with weights and the activation module that follows it (if any).

    Attributes:
        name: dotted module name (``"blocks.0.linear"``; ``"model"`` for a bare layer).
        kind: the module's class name, e.g. ``"Linear"``.
        fan_in, fan_out: input and output size (channels for convolutions).
        activation: name of the following activation (``"relu"``, ``"sigmoid"`` …) or None.
        module: the layer; ``act_module``: its activation module or None.
    """

    name: str
    kind: str
    fan_in: int
    fan_out: int
    activation: str | None
    module: nn.Module
    act_module: nn.Module | None

    @property
    def weight(self) -> torch.Tensor:
        """The layer's ``weight`` parameter (:func:`describe_layers` keeps only such layers)."""
        w = self.module.weight
        assert isinstance(w, torch.Tensor), f"{self.name} has no weight tensor"
        return w

    def meta(self) -> dict[str, Any]:
        """JSON-ready description (no modules)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "activation": self.activation,
        }


def describe_layers(model: nn.Module) -> list[LayerInfo]:
    """Walk ``model`` in registration order and pair each weighted layer with its activation.

    A weighted layer is a module that directly owns a ``weight`` parameter of 2+
    dimensions. An activation module (ReLU, sigmoid, …) belongs to the nearest weighted
    layer registered before it; normalization and dropout in between are skipped.

    Args:
        model: any ``nn.Module``.

    Returns:
        The layers in order, the output head last.
    """
    layers: list[LayerInfo] = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
            layers.append(
                LayerInfo(
                    name=name or "model",
                    kind=type(module).__name__,
                    fan_in=int(weight.shape[1])
                    * (module.groups if hasattr(module, "groups") else 1),
                    fan_out=int(weight.shape[0]),
                    activation=None,
                    module=module,
                    act_module=None,
                )
            )
        elif name_of_activation(module) and layers and layers[-1].act_module is None:
            # nn's registry is the one table of activation types; other modules (custom
            # activations, ReLU6) are measured by inference instead (see Probe.arm).
            layers[-1].activation = name_of_activation(module)
            layers[-1].act_module = module
    return layers


def probe_schedule(step: int, every: int) -> bool:
    """Whether global step ``step`` (0-based) is probed: step 0 and every ``every``-th step.

    Step 0 shows the initialization (first-step gradients, symmetry, the first update);
    a run of S steps then costs ⌈S/every⌉ probe steps.
    """
    return step % every == 0


def _safe_norm(t: torch.Tensor) -> float:
    """‖t‖₂ without float32 underflow: ‖t‖ = m·‖t/m‖ with m = max|t| (pre-scaling).

    Squares of ~1e-32 underflow float32 to 0; dividing by the largest magnitude first keeps
    every square in range, and costs two float32 passes instead of a float64 copy.
    """
    t = t.detach()
    if t.numel() == 0:
        return 0.0
    m = float(t.abs().max())
    if m == 0.0 or not math.isfinite(m):
        return m
    if t.dtype == torch.float64:
        return float(torch.linalg.vector_norm(t))
    return m * float(torch.linalg.vector_norm(t / m, dtype=torch.float64))


class Probe:
    """Per-layer statistics of one model on sampled steps.

    Usage per probe step (the Trainer callback and :func:`watch` do this for you):
    ``arm()`` before the forward pass, ``grads()`` once gradients exist (it also takes the
    weight snapshot for the update ratio), ``update()`` after the optimizer step; then
    ``record()`` returns the step's statistics as a JSON-ready dict.

    Args:
        model: the model to watch.
        every: probe period in steps (see :func:`probe_schedule`).
    """

    def __init__(self, model: nn.Module, every: int = 50) -> None:
        if every < 1:
            raise ValueError(f"every: must be >= 1, got {every}")
        self.model = model
        self.every = int(every)
        self.layers = describe_layers(model)
        self._handles: list[Any] = []
        self._stats: dict[str, dict[str, Any]] = {}
        self._snap: dict[str, torch.Tensor] = {}
        self._global: dict[str, Any] = {}
        self._input: dict[str, float] = {}
        self._z: dict[str, torch.Tensor] = {}  # pre-activations awaiting their post-activation
        self._head_kind: str | None = None
        self._head_seen = False  # the head's output was measured on this probe step
        self._last: str | None = None  # the weighted layer that ran last (execution order)
        self.records = 0  # probe steps recorded so far

    # ---- forward side -------------------------------------------------------------
    def arm(self) -> None:
        """Register the forward hooks for the next training forward pass."""
        self.disarm()
        self._stats = {info.name: {} for info in self.layers}
        self._input, self._z, self._head_kind = {}, {}, None
        self._head_seen, self._last = False, None
        if self.layers:
            first = self.layers[0].module
            self._handles.append(first.register_forward_pre_hook(self._input_hook))
        for i, info in enumerate(self.layers):
            if info.act_module is not None:  # a known activation module: hook it directly
                self._handles.append(
                    info.act_module.register_forward_hook(self._make_act_hook(info))
                )
            # The layer's output is the pre-activation z and the next weighted layer's input
            # (or, after the head, the model's output) the post-activation: measured there
            # unless the paired activation module ran right after the layer (registration
            # order is only a guess: a user's net may register all its activation modules
            # after its head, and the first of them is no output activation).
            self._handles.append(info.module.register_forward_hook(self._make_z_hook(info)))
            if i + 1 < len(self.layers):
                nxt = self.layers[i + 1].module
                self._handles.append(nxt.register_forward_pre_hook(self._make_post_hook(info)))
            else:
                self._handles.append(self.model.register_forward_hook(self._make_head_hook(info)))

    def disarm(self) -> None:
        """Remove the forward hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._z = [], {}

    @property
    def armed(self) -> bool:
        """True while forward hooks are registered."""
        return bool(self._handles)

    def _input_hook(self, module: nn.Module, inputs: tuple) -> None:
        if not module.training or self._input or not inputs:
            return
        x = inputs[0].detach().to(torch.float64)
        self._input = {
            "abs_mean": float(x.abs().mean()),
            "std": float(x.std()) if x.numel() > 1 else 0.0,
        }

    def _make_act_hook(self, info: LayerInfo) -> Callable[[nn.Module, tuple, Any], None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not module.training or self._stats[info.name] or not torch.is_tensor(output):
                return
            if self._last != info.name:
                return  # another layer ran last: this module does not follow ``info``
            st = activation_stats(info.activation, inputs, output.detach())
            st["act_kind"] = info.activation
            self._stats[info.name] = st

        return hook

    def _make_z_hook(self, info: LayerInfo) -> Callable[[nn.Module, tuple, Any], None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if module.training and torch.is_tensor(output) and info.name not in self._z:
                self._z[info.name] = output.detach()
                self._last = info.name

        return hook

    def _make_post_hook(self, info: LayerInfo) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, inputs: tuple) -> None:
            z = self._z.pop(info.name, None)
            if not module.training or self._stats[info.name] or z is None or not inputs:
                return
            a = inputs[0]
            if torch.is_tensor(a):
                self._stats[info.name] = _inferred_stats(infer_activation(z, a), z, a.detach())

        return hook

    def _make_head_hook(self, info: LayerInfo) -> Callable[[nn.Module, tuple, Any], None]:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            z = self._z.pop(info.name, None)
            out = output if torch.is_tensor(output) else None
            if not module.training or self._head_seen:
                return
            if self._stats[info.name]:  # the activation module that ran after the head
                self._head_kind, self._head_seen = self._stats[info.name].get("act_kind"), True
                return
            if z is None or out is None:
                return
            kind = infer_head(z, out)
            self._head_kind, self._head_seen = kind, True
            self._stats[info.name] = _inferred_stats(kind, z, out.detach())

        return hook

    # ---- backward / step side -----------------------------------------------------
    def snapshot(self) -> None:
        """Copy the weights now, for the update ratio of the next optimizer step."""
        self._snap = {info.name: info.weight.detach().clone() for info in self.layers}

    def grads(self) -> None:
        """Record gradient statistics (and snapshot the weights unless :meth:`snapshot` did)."""
        total = 0.0
        finite = True
        first = self.records == 0
        for info in self.layers:
            w = info.weight
            st = self._stats.setdefault(info.name, {})
            st["weight_norm"] = _safe_norm(w)
            if first:  # units stay identical under gradient descent: the start decides symmetry
                st["unit_spread"] = _unit_spread(w)
                bias = getattr(info.module, "bias", None)
                if torch.is_tensor(bias) and bias.numel():  # negative biases start units dead
                    st["bias_mean"] = float(bias.detach().to(torch.float64).mean())
            if info.name not in self._snap:
                self._snap[info.name] = w.detach().clone()
            if w.grad is None:
                st.update(grad_norm=None, grad_abs_mean=None, grad_zero_share=None)
                continue
            g = w.grad.detach()
            n = g.numel()
            norm = _safe_norm(g)
            st["grad_norm"] = norm
            st["grad_abs_mean"] = (
                float(torch.linalg.vector_norm(g, 1, dtype=torch.float64)) / n if n else 0.0
            )
            st["grad_zero_share"] = 1.0 - int(torch.count_nonzero(g)) / n if n else 0.0
            finite = finite and math.isfinite(norm)
        seen = {id(info.weight) for info in self.layers}
        total = sum((self._stats[i.name].get("grad_norm") or 0.0) ** 2 for i in self.layers)
        for p in self.model.parameters():
            if p.grad is not None and id(p) not in seen:
                total += _safe_norm(p.grad) ** 2
        self._global = {
            "grad_norm": math.sqrt(total),
            "grads_finite": finite and math.isfinite(total),
        }

    def update(self) -> None:
        """Record ‖ΔW‖/‖W‖ against the snapshot taken by :meth:`grads` (after the step)."""
        for info in self.layers:
            before = self._snap.get(info.name)
            if before is None:
                continue
            w_norm = _safe_norm(before)
            delta = _safe_norm(info.weight.detach() - before)
            ratio = delta / w_norm if w_norm > 0 else (math.inf if delta > 0 else 0.0)
            self._stats[info.name]["update_ratio"] = ratio
        self._snap = {}

    def record(self, step: int, loss: float | None = None, epoch: int | None = None) -> dict:
        """The statistics of the probe step as a JSON-ready dict (and reset for the next)."""
        self.disarm()
        rec = {
            "type": "probe",
            "step": int(step),
            "epoch": epoch,
            "loss": loss,
            "loss_finite": loss is None or math.isfinite(loss),
            **self._global,
            "input": self._input or None,
            "output_activation": self._head_kind,
            "head_measured": self._head_seen,  # output_activation None then means logits
            "layers": {name: dict(st) for name, st in self._stats.items()},
        }
        self._stats, self._global, self._input = {}, {}, {}
        self._head_seen = False
        self.records += 1
        return rec

    def meta(self) -> dict[str, Any]:
        """The model description written once at the top of ``health.jsonl``."""
        return {"type": "meta", "every": self.every, "layers": [i.meta() for i in self.layers]}


def _unit_spread(w: torch.Tensor) -> float:
    """‖W − mean_row‖/‖W‖ over output units; 0 for identical units (or W = 0)."""
    m = w.detach().to(torch.float64).reshape(w.shape[0], -1)
    total = float(torch.linalg.vector_norm(m))
    if m.shape[0] < 2 or total == 0.0:
        return 0.0 if m.shape[0] >= 2 else 1.0
    return float(torch.linalg.vector_norm(m - m.mean(dim=0, keepdim=True))) / total


def _inferred_stats(kind: str | None, z: torch.Tensor, a: torch.Tensor) -> dict[str, Any]:
    """:func:`activation_stats` of post-activation ``a``, with ``z`` where the shapes agree."""
    st = activation_stats(kind, (z,) if z.shape == a.shape else (), a)
    st["act_kind"] = kind
    return st
