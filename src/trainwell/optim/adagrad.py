"""AdaGrad: per-coordinate step sizes from the sum of squared gradients."""

from __future__ import annotations

from typing import Any

import torch

from ._foreach import ExactOptimizer, check_nonnegative, decay_many, decay_one, rebase_eps
from ._fused import fused_adagrad

__all__ = ["AdaGrad", "adagrad"]


class AdaGrad(ExactOptimizer):
    r"""AdaGrad: s ← s + g⊗g;  θ ← θ − η g / √(s + ε)   (ε inside the root).

    With ε inside the root the state ``sum`` holds s' = s + ε (it starts at s₀ + ε and
    gains g⊗g like s), so the root is √s': torch's fused kernel with its ε = 0 computes it
    in one pass (the automatic path). ``state["eps"]`` records the ε carried; a changed
    group ε is re-based exactly (:func:`._foreach.rebase_eps`).

    g = ∇J(θ) + λθ (L2 weight decay). ``convention="keras"`` has the same formula with
    Keras' defaults (accumulator starting at 0.1, ε = 1e-7, η = 1e-3) and Keras'
    decoupled weight decay θ ← θ − η λ θ.

    Differences from ``torch.optim.Adagrad``: torch puts ε outside the root,
    θ ← θ − η g / (√s + ε); ``convention="torch"`` reproduces it (without ``lr_decay``).

    Args:
        params: tensors or param-group dicts.
        lr: η ≥ 0 (None: the convention's default: 0.01, 0.01, 1e-3).
        eps: ε ≥ 0 (1e-10 lecture/torch, 1e-7 keras).
        weight_decay: λ ≥ 0.
        initial_accumulator_value: s₀ ≥ 0 (0 lecture/torch, 0.1 keras).
        convention: "lecture", "torch" or "keras".
        foreach: True multi-tensor path, False loop, None automatic: torch's fused
            kernel for the torch convention (equal to the loop to rounding), else
            multi-tensor.

    Raises:
        ValueError: a hyperparameter out of range, naming it.

    Reference: Duchi, Hazan & Singer (2011).
    """

    DEFAULTS = {
        "lecture": {
            "lr": 0.01,
            "eps": 1e-10,
            "weight_decay": 0.0,
            "initial_accumulator_value": 0.0,
        },
        "torch": {"lr": 0.01, "eps": 1e-10, "weight_decay": 0.0, "initial_accumulator_value": 0.0},
        "keras": {"lr": 1e-3, "eps": 1e-7, "weight_decay": 0.0, "initial_accumulator_value": 0.1},
    }

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        initial_accumulator_value: float | None = None,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            convention=convention,
            foreach=foreach,
            lr=lr,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
        )

    CHECKS = dict.fromkeys(
        ("lr", "eps", "weight_decay", "initial_accumulator_value"), check_nonnegative
    )

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        inside = group["convention"] != "torch"  # ε inside the root: carried in the sum
        state["sum"] = torch.full_like(
            param, group["initial_accumulator_value"] + (group["eps"] if inside else 0.0),
            memory_format=torch.preserve_format,
        )
        if inside:
            state["eps"] = group["eps"]

    def _rebase(self, group: dict[str, Any], states: list[dict[str, Any]]) -> None:
        if group["convention"] != "torch":
            rebase_eps(states, "sum", group["eps"], [1.0] * len(states))

    def _fused(self, group, params, grads, states):  # noqa: D102
        self._rebase(group, states)
        return fused_adagrad(params, grads, [s["sum"] for s in states], lr=group["lr"],
                             eps=group["eps"], weight_decay=group["weight_decay"],
                             convention=group["convention"])

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        self._rebase(group, states)
        adagrad(
            params,
            grads,
            [s["sum"] for s in states],
            lr=group["lr"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            convention=group["convention"],
            foreach=foreach,
        )


def adagrad(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    sums: list[torch.Tensor],
    *,
    lr: float,
    eps: float,
    weight_decay: float,
    convention: str,
    foreach: bool,
) -> None:
    """Functional AdaGrad step (formulas in :class:`AdaGrad`); updates tensors in place.

    Args:
        params: parameters θ.
        grads: gradients (not modified).
        sums: accumulators s (ε inside the root, lecture and keras: s + ε).
        lr, eps, weight_decay, convention: see :class:`AdaGrad`.
        foreach: use the multi-tensor path.
    """
    fn = _multi_tensor_adagrad if foreach else _single_tensor_adagrad
    fn(params, grads, sums, lr, eps, weight_decay, convention)


def _single_tensor_adagrad(params, grads, sums, lr, eps, weight_decay, convention):
    for p, g, s in zip(params, grads, sums):
        g = decay_one(p, g, lr, weight_decay, convention == "keras")
        s.addcmul_(g, g)
        denom = s.sqrt().add_(eps) if convention == "torch" else s.sqrt()
        p.addcdiv_(g, denom, value=-lr)


def _multi_tensor_adagrad(params, grads, sums, lr, eps, weight_decay, convention):
    grads = decay_many(params, grads, lr, weight_decay, convention == "keras")
    torch._foreach_addcmul_(sums, grads, grads)
    if convention == "torch":
        denoms = torch._foreach_sqrt(sums)
        torch._foreach_add_(denoms, eps)
    else:
        denoms = torch._foreach_sqrt(sums)
    torch._foreach_addcdiv_(params, grads, denoms, value=-lr)
