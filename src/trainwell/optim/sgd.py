"""Gradient descent with optional (Nesterov) momentum: ``SGD``, ``Momentum``, ``Nesterov``.

One implementation, three names: ``Momentum`` is ``SGD`` with momentum 0.9 by default and
``Nesterov`` additionally uses the look-ahead gradient.
"""

from __future__ import annotations

from typing import Any

import torch

from ._foreach import ExactOptimizer, check_interval, check_nonnegative, decay_many, decay_one
from ._fused import fused_sgd

__all__ = ["SGD", "Momentum", "Nesterov", "sgd"]


class SGD(ExactOptimizer):
    r"""Gradient descent, optionally with momentum or Nesterov momentum.

    Lecture formulas (``convention="lecture"``, the default; g = ∇J(θ) + λθ):

    - plain: θ ← θ − η g
    - momentum: m ← β m + η g;  θ ← θ − m   (η *inside* m)
    - Nesterov: m ← β m + η ∇J(θ − β m);  θ ← θ − m. The parameter tensor stores the
      look-ahead point φ = θ − β m, so one gradient per step suffices:
      m ← β m + η g(φ);  φ ← φ − η g(φ) − β m. (The lecture writes θ + βm, a sign slip
      with this sign of m.) After training, θ = φ + β m.

    Differences from ``torch.optim.SGD``: torch keeps η outside the buffer
    (b ← μ b + g; θ ← θ − η b), so a changed learning rate rescales the whole velocity
    at once; ``convention="torch"`` reproduces it (without ``dampening``/``maximize``;
    for dampening 0 a zero buffer equals torch's buffer started at the first gradient;
    like torch, its foreach Nesterov step adds μ b into ``.grad`` in place).
    ``convention="keras"`` uses Keras' v ← μ v − η g; θ ← θ + v (Nesterov:
    θ ← θ + μ v − η g) and Keras' decoupled weight decay θ ← θ − η λ θ before the step.

    Defaults: η = 0.01 (lecture, keras) or 1e-3 (torch); momentum 0 here, 0.9 in
    ``Momentum``/``Nesterov``.

    State (lecture, keras): the velocity is kept as m = c·b, ``momentum_buffer`` = b and
    ``state["momentum_scale"]`` = c, the last nonzero η. A step with η ≠ 0 computes
    b ← (β c/η) b + g, c ← η, θ ← θ − η b (Nesterov: φ ← φ − η (g + β b)), which is the
    lecture's m ← β m + η g, θ ← θ − m exactly (to rounding) and, while η stays as it
    was, torch's buffer update: the automatic path runs torch's fused SGD kernel, with one
    multiply of b by c/η only on steps where η changed. A step with η = 0 keeps c and
    decays b by β. :meth:`velocity` returns m (lecture) or v = −m (keras).

    Args:
        params: tensors or param-group dicts.
        lr: learning rate η ≥ 0 (None: the convention's default).
        momentum: β (μ) in [0, 1).
        weight_decay: λ ≥ 0, L2 added to the gradient (keras: decoupled).
        nesterov: use Nesterov momentum (needs momentum > 0).
        convention: "lecture", "torch" or "keras".
        foreach: True multi-tensor path, False loop, None automatic: torch's fused
            kernel for the torch convention (equal to the loop to rounding), else
            multi-tensor.

    Raises:
        ValueError: a hyperparameter out of range, naming it.

    Reference: Polyak (1964); Sutskever et al. (2013) for the Nesterov form.
    """

    DEFAULTS = {
        "lecture": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
        "torch": {"lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0},
        "keras": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
    }

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        nesterov: bool = False,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            convention=convention,
            foreach=foreach,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )

    CHECKS = {
        "lr": check_nonnegative,
        "momentum": check_interval,
        "weight_decay": check_nonnegative,
    }

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("nesterov: needs momentum in (0, 1), got momentum=0")

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        if group["momentum"] != 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group["convention"] != "torch":
                state["momentum_scale"] = 1.0  # c of m = c·b (b = 0: any c)

    def velocity(self, param: torch.Tensor) -> torch.Tensor | None:
        """The convention's velocity of ``param``: m (lecture), v = −m (keras) or torch's
        buffer b (η outside); None before its first step with momentum."""
        state = self.state.get(param, {})
        buf = state.get("momentum_buffer")
        if buf is None:
            return None
        convention = next(g["convention"] for g in self.param_groups
                          if any(p is param for p in g["params"]))
        if convention == "torch":
            return buf.clone()
        return buf * (_scale(state, convention) * (1.0 if convention == "lecture" else -1.0))

    def _rescale(self, group: dict[str, Any], states: list[dict[str, Any]]) -> None:
        """Bring every buffer to the units of this step's η ≠ 0 (the class docstring):
        b ← (c/η) b, c ← η; nothing for the torch convention or without momentum."""
        lr, conv = group["lr"], group["convention"]
        if conv == "torch" or group["momentum"] == 0 or lr == 0:
            return  # η = 0 keeps each c: the loop/foreach path decays b by β
        stale = [s for s in states if _scale(s, conv) != lr]
        if stale:
            factors = [_scale(s, conv) / lr for s in stale]
            torch._foreach_mul_([s["momentum_buffer"] for s in stale], factors)
            for s in stale:
                s["momentum_scale"] = lr

    def _fused(self, group, params, grads, states):  # noqa: D102
        lr, wd = group["lr"], group["weight_decay"]
        if group["convention"] != "torch" and group["momentum"] != 0 and lr == 0:
            return False
        bufs = self._buffers(group, params, states)
        self._rescale(group, states)
        if group["convention"] == "keras" and wd != 0:  # decoupled: θ ← θ (1 − η λ) first
            torch._foreach_mul_(params, 1.0 - lr * wd)
            wd = 0.0
        return fused_sgd(params, grads, bufs, lr=lr, momentum=group["momentum"],
                         weight_decay=wd, nesterov=group["nesterov"])

    def _buffers(self, group, params, states):
        if group["momentum"] != 0:
            for p, s in zip(params, states):
                if "momentum_buffer" not in s:  # momentum switched on after the first step
                    self._init_state(p, s, group)
        return [s.get("momentum_buffer") for s in states]

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        bufs = self._buffers(group, params, states)
        if group["convention"] != "torch" and group["momentum"] != 0:
            self._rescale(group, states)
            scales = [_scale(s, group["convention"]) for s in states]
        else:
            scales = None
        sgd(
            params,
            grads,
            bufs,
            scales=scales,
            lr=group["lr"],
            momentum=group["momentum"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            convention=group["convention"],
            foreach=foreach,
        )


class Momentum(SGD):
    """Momentum optimization: m ← β m + η g; θ ← θ − m (β = 0.9). See :class:`SGD`.

    Args:
        params, lr, weight_decay, convention, foreach: as :class:`SGD`.
        momentum: β in [0, 1), default 0.9 in every convention.
    """

    DEFAULTS = {c: {**d, "momentum": 0.9} for c, d in SGD.DEFAULTS.items()}

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, momentum, weight_decay, False, convention=convention, foreach=foreach
        )


class Nesterov(SGD):
    """Nesterov accelerated gradient: m ← β m + η ∇J(θ − β m); θ ← θ − m. See :class:`SGD`.

    The parameter holds the look-ahead point θ − β m, so the gradient the user computes
    is already the look-ahead gradient; one gradient per step.

    Args:
        params, lr, weight_decay, convention, foreach: as :class:`SGD`.
        momentum: β in (0, 1), default 0.9 in every convention.
    """

    DEFAULTS = Momentum.DEFAULTS

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, momentum, weight_decay, True, convention=convention, foreach=foreach
        )


def _scale(state: dict[str, Any], convention: str) -> float:
    # c of m = c·b; a buffer from before c was kept holds m (lecture) or v = −m (keras)
    return state.get("momentum_scale", 1.0 if convention == "lecture" else -1.0)


def sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor | None],
    *,
    scales: list[float] | None = None,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    convention: str,
    foreach: bool,
) -> None:
    """Functional SGD step (formulas in :class:`SGD`); updates tensors in place.

    Args:
        params: parameters θ (or look-ahead points φ for Nesterov).
        grads: their gradients (not modified).
        momentum_buffers: b per parameter (None entries when momentum is 0).
        scales: lecture and keras with momentum: c per parameter, m = c·b, already equal
            to η when η ≠ 0 (see :class:`SGD`); None: c = η.
        lr, momentum, weight_decay, nesterov, convention: see :class:`SGD`.
        foreach: use the multi-tensor path.
    """
    if scales is None:
        scales = [lr] * len(params)
    fn = _multi_tensor_sgd if foreach else _single_tensor_sgd
    fn(params, grads, momentum_buffers, scales, lr, momentum, weight_decay, nesterov, convention)


def _single_tensor_sgd(params, grads, bufs, scales, lr, momentum, weight_decay, nesterov,
                       convention):
    for p, g, buf, c in zip(params, grads, bufs, scales):
        g = decay_one(p, g, lr, weight_decay, convention == "keras")
        if momentum == 0:
            p.add_(g, alpha=-lr)
        elif convention == "torch":
            buf.mul_(momentum).add_(g)
            p.add_(g.add(buf, alpha=momentum) if nesterov else buf, alpha=-lr)
        else:
            # b ← μ b + g, θ ← θ − c b in the units c = η (see SGD); η = 0: b ← β b
            buf.mul_(momentum)
            if lr != 0:
                buf.add_(g)
            if nesterov:
                p.add_(g, alpha=-lr).add_(buf, alpha=-momentum * c)
            else:
                p.add_(buf, alpha=-c)


def _multi_tensor_sgd(params, grads, bufs, scales, lr, momentum, weight_decay, nesterov,
                      convention):
    grads = decay_many(params, grads, lr, weight_decay, convention == "keras")
    if momentum == 0:
        torch._foreach_add_(params, grads, alpha=-lr)
    elif convention == "torch":
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        if nesterov:  # in place on the gradients, as torch.optim.SGD does: no allocation
            torch._foreach_add_(grads, bufs, alpha=momentum)
        torch._foreach_add_(params, grads if nesterov else bufs, alpha=-lr)
    else:
        torch._foreach_mul_(bufs, momentum)
        if lr != 0:
            torch._foreach_add_(bufs, grads)
        if nesterov:
            torch._foreach_add_(params, grads, alpha=-lr)
        factor = -momentum if nesterov else -1.0
        if len(set(scales)) == 1:  # one η for all (always, unless η = 0 met mixed scales)
            torch._foreach_add_(params, bufs, alpha=factor * scales[0])
        else:
            torch._foreach_add_(params, torch._foreach_mul(bufs, [factor * c for c in scales]))
