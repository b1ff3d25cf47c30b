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

    def _fused(self, group, params, grads, states):  # noqa: D102
        if group["convention"] != "torch":
            return False  # η inside the buffer (lecture) or v = −m (keras): no kernel
        return fused_sgd(params, grads, self._buffers(group, params, states), lr=group["lr"],
                         momentum=group["momentum"], weight_decay=group["weight_decay"],
                         nesterov=group["nesterov"], convention="torch")

    def _buffers(self, group, params, states):
        if group["momentum"] != 0:
            for p, s in zip(params, states):
                if "momentum_buffer" not in s:  # momentum switched on after the first step
                    self._init_state(p, s, group)
        return [s.get("momentum_buffer") for s in states]

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        bufs = self._buffers(group, params, states)
        sgd(
            params,
            grads,
            bufs,
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


def sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    momentum_buffers: list[torch.Tensor | None],
    *,
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
        momentum_buffers: m per parameter (None entries when momentum is 0).
        lr, momentum, weight_decay, nesterov, convention: see :class:`SGD`.
        foreach: use the multi-tensor path.
    """
    fn = _multi_tensor_sgd if foreach else _single_tensor_sgd
    fn(params, grads, momentum_buffers, lr, momentum, weight_decay, nesterov, convention)


def _single_tensor_sgd(params, grads, bufs, lr, momentum, weight_decay, nesterov, convention):
    for p, g, buf in zip(params, grads, bufs):
        g = decay_one(p, g, lr, weight_decay, convention == "keras")
        if momentum == 0:
            p.add_(g, alpha=-lr)
        elif convention == "lecture":
            buf.mul_(momentum).add_(g, alpha=lr)
            if nesterov:
                p.add_(g, alpha=-lr).add_(buf, alpha=-momentum)
            else:
                p.sub_(buf)
        elif convention == "torch":
            buf.mul_(momentum).add_(g)
            p.add_(g.add(buf, alpha=momentum) if nesterov else buf, alpha=-lr)
        else:  # keras: velocity v = −m
            buf.mul_(momentum).add_(g, alpha=-lr)
            if nesterov:
                p.add_(buf, alpha=momentum).add_(g, alpha=-lr)
            else:
                p.add_(buf)


def _multi_tensor_sgd(params, grads, bufs, lr, momentum, weight_decay, nesterov, convention):
    grads = decay_many(params, grads, lr, weight_decay, convention == "keras")
    if momentum == 0:
        torch._foreach_add_(params, grads, alpha=-lr)
    elif convention == "lecture":
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=lr)
        if nesterov:
            torch._foreach_add_(params, grads, alpha=-lr)
            torch._foreach_add_(params, bufs, alpha=-momentum)
        else:
            torch._foreach_sub_(params, bufs)
    elif convention == "torch":
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        if nesterov:  # in place on the gradients, as torch.optim.SGD does: no allocation
            torch._foreach_add_(grads, bufs, alpha=momentum)
        torch._foreach_add_(params, grads if nesterov else bufs, alpha=-lr)
    else:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=-lr)
        if nesterov:
            torch._foreach_add_(params, bufs, alpha=momentum)
            torch._foreach_add_(params, grads, alpha=-lr)
        else:
            torch._foreach_add_(params, bufs)
