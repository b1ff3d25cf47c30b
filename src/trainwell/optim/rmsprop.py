"""RMSProp: AdaGrad with an exponentially decaying average of squared gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ._foreach import (
    ExactOptimizer,
    check_interval,
    check_nonnegative,
    decay_many,
    decay_one,
    rebase_eps,
)
from ._fused import fused_rmsprop

__all__ = ["RMSProp", "rmsprop"]


class RMSProp(ExactOptimizer):
    r"""RMSProp: s ← β s + (1 − β) g⊗g;  θ ← θ − η g / (√s + ε), β = 0.9.

    g = ∇J(θ) + λθ (L2 weight decay). ``convention="torch"`` is the same formula with
    torch's defaults (β = ``alpha`` = 0.99, η = 0.01, ε = 1e-8); ``convention="keras"``
    puts ε inside the root, θ ← θ − η g / √(s + ε) (ρ = 0.9, η = 1e-3, ε = 1e-7) and uses
    Keras' decoupled weight decay θ ← θ − η λ θ.

    Differences from ``torch.optim.RMSprop``: the decay is called ``beta`` (torch:
    ``alpha``) and defaults to 0.9 (torch: 0.99); no momentum/centered variants.

    Args:
        params: tensors or param-group dicts.
        lr: η ≥ 0 (None: the convention's default: 1e-3, 1e-2, 1e-3).
        beta: decay β in [0, 1).
        eps: ε ≥ 0 (1e-10 lecture, 1e-8 torch, 1e-7 keras).
        weight_decay: λ ≥ 0.
        convention: "lecture", "torch" or "keras".
        foreach: True multi-tensor path, False loop, None automatic.

    Raises:
        ValueError: a hyperparameter out of range, naming it.

    Automatic path (``foreach=None``): RMSProp is Adam without momentum and without bias
    correction, so torch's fused Adam kernel computes it with β1 = 0 and a step count so
    large that 1 − β1ᵗ = 1 − β2ᵗ = 1 exactly (t = 1e30): one pass over memory, plus a
    scratch first-moment buffer per parameter (kept outside the state, not checkpointed).
    For ε inside the root (keras) ``square_avg`` holds s' = s + ε, which obeys
    s' ← β s' + (1 − β)(g⊗g + ε), starting at ε; ``state["eps"]`` records the ε carried
    and a changed group ε is re-based exactly.

    Reference: Tieleman & Hinton (2012), Coursera lecture 6.5.
    """

    DEFAULTS = {
        "lecture": {"lr": 1e-3, "beta": 0.9, "eps": 1e-10, "weight_decay": 0.0},
        "torch": {"lr": 1e-2, "beta": 0.99, "eps": 1e-8, "weight_decay": 0.0},
        "keras": {"lr": 1e-3, "beta": 0.9, "eps": 1e-7, "weight_decay": 0.0},
    }

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        beta: float | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            convention=convention,
            foreach=foreach,
            lr=lr,
            beta=beta,
            eps=eps,
            weight_decay=weight_decay,
        )

    CHECKS = {
        "lr": check_nonnegative,
        "beta": check_interval,
        "eps": check_nonnegative,
        "weight_decay": check_nonnegative,
    }

    PACKED: ClassVar[tuple[str, ...]] = ("square_avg",)  # keras' ε shift: one add over one buffer per step

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        inside = group["convention"] == "keras"  # ε inside the root: carried in the average
        state["square_avg"] = torch.full_like(param, group["eps"] if inside else 0.0,
                                              memory_format=torch.preserve_format)
        if inside:
            state["eps"] = group["eps"]

    def _rebase(self, group: dict[str, Any], states: list[dict[str, Any]]) -> None:
        if group["convention"] == "keras":
            rebase_eps(states, "square_avg", group["eps"], [1.0] * len(states))

    def _fused(self, group, params, grads, states):  # noqa: D102
        self._rebase(group, states)
        # the optimizer holds its parameters, so their ids are stable keys
        scratch: dict[int, torch.Tensor] = self.__dict__.setdefault("_first_moments", {})
        firsts = []
        for p in params:
            m = scratch.get(id(p))
            if m is None or m.shape != p.shape or m.dtype != p.dtype or m.device != p.device:
                m = scratch[id(p)] = torch.zeros_like(p)
            firsts.append(m)
        avgs = [s["square_avg"] for s in states]
        return fused_rmsprop(params, grads, firsts, avgs, lr=group["lr"], beta=group["beta"],
                             eps=group["eps"], weight_decay=group["weight_decay"],
                             convention=group["convention"],
                             packed_avgs=self.packed(group, "square_avg", avgs))

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        self._rebase(group, states)
        rmsprop(
            params,
            grads,
            [s["square_avg"] for s in states],
            lr=group["lr"],
            beta=group["beta"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            convention=group["convention"],
            foreach=foreach,
        )


def rmsprop(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    *,
    lr: float,
    beta: float,
    eps: float,
    weight_decay: float,
    convention: str,
    foreach: bool,
) -> None:
    """Functional RMSProp step (formulas in :class:`RMSProp`); updates tensors in place.

    Args:
        params: parameters θ.
        grads: gradients (not modified).
        square_avgs: moving averages s of g⊗g (keras, ε inside the root: s + ε).
        lr, beta, eps, weight_decay, convention: see :class:`RMSProp`.
        foreach: use the multi-tensor path.
    """
    fn = _multi_tensor_rmsprop if foreach else _single_tensor_rmsprop
    fn(params, grads, square_avgs, lr, beta, eps, weight_decay, convention)


def _single_tensor_rmsprop(params, grads, square_avgs, lr, beta, eps, weight_decay, convention):
    for p, g, s in zip(params, grads, square_avgs):
        g = decay_one(p, g, lr, weight_decay, convention == "keras")
        s.mul_(beta)
        if convention == "keras":  # s' = s + ε: s' ← β s' + (1 − β)(g⊗g + ε)
            s.add_(eps * (1.0 - beta))
        s.addcmul_(g, g, value=1.0 - beta)
        denom = s.sqrt() if convention == "keras" else s.sqrt().add_(eps)
        p.addcdiv_(g, denom, value=-lr)


def _multi_tensor_rmsprop(params, grads, square_avgs, lr, beta, eps, weight_decay, convention):
    grads = decay_many(params, grads, lr, weight_decay, convention == "keras")
    torch._foreach_mul_(square_avgs, beta)
    if convention == "keras":
        torch._foreach_add_(square_avgs, eps * (1.0 - beta))
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1.0 - beta)
    if convention == "keras":
        denoms = torch._foreach_sqrt(square_avgs)
    else:
        denoms = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(params, grads, denoms, value=-lr)
