"""The Adam family: ``Adam``, ``AdamW`` (decoupled weight decay), ``Nadam``, ``AdaMax``.

Implementation note: the bias corrections are folded into per-tensor Python scalars, e.g.
η m̂ / √(ŝ + ε) = (η √(1−β2ᵗ) / (1−β1ᵗ)) · m / √(s + ε (1−β2ᵗ)), so a step makes one pass
less over memory than the textbook order; the results agree with it to rounding (~1e-16).

The lecture convention's ε inside the root is carried in the state: Adam/AdamW keep
s' = s + ε(1 − β2ᵗ) in ``exp_avg_sq``, which obeys the same moving average with g² + ε,
s'ₜ = β2 s'ₜ₋₁ + (1 − β2)(g² + ε), s'₀ = 0 (since ε(1−β2ᵗ) − β2 ε(1−β2ᵗ⁻¹) = ε(1−β2)), so
η m̂ / √(ŝ + ε) = (η √(1−β2ᵗ)/(1−β1ᵗ)) · m / √s'. Then the root holds nothing but the moment,
which is torch's fused kernel with its ε set to 0 (see :mod:`._fused`): the automatic path
runs the lecture formula in one pass over memory plus one scalar add. ``state["eps"]``
records the ε carried; a changed group ε is re-based exactly (:func:`._foreach.rebase_eps`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from ._foreach import (
    ExactOptimizer,
    check_betas,
    check_nonnegative,
    decay_many,
    decay_one,
    rebase_eps,
)
from ._fused import add_to_all, fused_adam, fused_nadam, nadam_weight

__all__ = ["AdaMax", "Adam", "AdamW", "Nadam", "adam", "adamax", "nadam"]


class Adam(ExactOptimizer):
    r"""Adam: adaptive moments with bias correction.

    Lecture formula (default; g = ∇J(θ) + λθ, t ≥ 1):
    m ← β1 m + (1 − β1) g;  s ← β2 s + (1 − β2) g⊗g;  m̂ = m/(1 − β1ᵗ);  ŝ = s/(1 − β2ᵗ);
    θ ← θ − η m̂ / √(ŝ + ε)   (ε inside the root, ε = 1e-7).

    Differences from ``torch.optim.Adam``: torch puts ε outside the root,
    θ ← θ − η m̂ / (√ŝ + ε), ε = 1e-8; ``convention="torch"`` reproduces it (no amsgrad).
    ``convention="keras"`` applies Keras' ε-hat to the uncorrected second moment,
    θ ← θ − η_t m / (√s + ε̂) with η_t = η √(1 − β2ᵗ)/(1 − β1ᵗ), ε̂ = 1e-7, and Keras'
    decoupled weight decay θ ← θ − η λ θ before the step.

    Args:
        params: tensors or param-group dicts.
        lr: η ≥ 0 (None: the convention's default, 1e-3).
        betas: (β1, β2), each in [0, 1); default (0.9, 0.999).
        eps: ε ≥ 0.
        weight_decay: λ ≥ 0 (L2 on the gradient; decoupled in ``AdamW`` and keras).
        convention: "lecture", "torch" or "keras".
        foreach: True multi-tensor path, False loop, None automatic: torch's fused
            kernel for the torch and keras conventions (see :mod:`._fused`; equal to the
            loop to rounding), else multi-tensor.

    Raises:
        ValueError: a hyperparameter out of range, naming it.

    Reference: Kingma & Ba (2015), Algorithm 1 and the ε̂ form before section 2.1.
    """

    DEFAULTS = {
        "lecture": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.0},
        "torch": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
        "keras": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.0},
    }
    _decoupled = False  # AdamW: θ ← θ (1 − η λ) instead of g ← g + λ θ
    _second = "exp_avg_sq"  # name of the second state tensor
    _has_kernel = True  # torch has a fused kernel for this update (not Nadam, AdaMax)
    _carries_eps = True  # lecture: exp_avg_sq holds s + ε(1 − β2ᵗ) (not AdaMax)
    PACKED: ClassVar[tuple[str, ...]] = ("exp_avg_sq",)  # the lecture's ε shift: one add over one buffer per step

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
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
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
        )

    CHECKS = {
        "lr": check_nonnegative,
        "betas": lambda _, value: check_betas(value),
        "eps": check_nonnegative,
        "weight_decay": check_nonnegative,
    }

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        state["step"] = 0  # a Python int: bias corrections need no device sync
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state[self._second] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if self._carries_eps and group["convention"] == "lecture":
            state["eps"] = group["eps"]

    def _common(self, group: dict[str, Any], states: list[dict[str, Any]]) -> dict[str, Any]:
        if self._carries_eps and group["convention"] == "lecture":
            beta2 = group["betas"][1]
            rebase_eps(states, "exp_avg_sq", group["eps"], [1.0 - beta2 ** s["step"] for s in states])
        for s in states:
            s["step"] += 1
        decoupled = self._decoupled or group["convention"] == "keras"
        return {
            "lr": group["lr"],
            "betas": group["betas"],
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "decoupled": decoupled,
            "convention": group["convention"],
        }

    def _fused(self, group, params, grads, states):  # noqa: D102
        conv = group["convention"]
        if not self._has_kernel:
            return False
        if conv == "keras" and len({s["step"] for s in states}) != 1:
            return False
        kw = self._common(group, states)
        ms, ss = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        del kw["convention"]
        return fused_adam(params, grads, ms, ss, [s["step"] for s in states], convention=conv,
                          packed_sqs=self.packed(group, "exp_avg_sq", ss), **kw)

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        kw = self._common(group, states)
        ms, ss = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        adam(params, grads, ms, ss, [s["step"] for s in states], foreach=foreach, **kw)


class AdamW(Adam):
    """Adam with decoupled weight decay: θ ← θ (1 − η λ), then the Adam step of :class:`Adam`.

    Same as ``torch.optim.AdamW`` apart from the conventions described in :class:`Adam`.
    Default λ: 0.01 (lecture, torch), 0.004 (keras).

    Args:
        params, lr, betas, eps, convention, foreach: as :class:`Adam`.
        weight_decay: λ ≥ 0.
    """

    DEFAULTS = {
        "lecture": {**Adam.DEFAULTS["lecture"], "weight_decay": 0.01},
        "torch": {**Adam.DEFAULTS["torch"], "weight_decay": 0.01},
        "keras": {**Adam.DEFAULTS["keras"], "weight_decay": 0.004},
    }
    _decoupled = True


class Nadam(Adam):
    r"""Nadam: Adam with Nesterov momentum.

    With μ_t = β1 (1 − ½·0.96^(tψ)) (ψ = ``momentum_decay``; ψ = 0 means no schedule,
    μ_t = β1) and Π_t = μ_1⋯μ_t:
    m̂ = μ_{t+1} m / (1 − Π_{t+1}) + (1 − μ_t) g / (1 − Π_t);  ŝ = s/(1 − β2ᵗ);
    θ ← θ − η m̂ / √(ŝ + ε)   (lecture: ε inside the root, ψ = 0, η = 1e-3).

    ``convention="torch"`` reproduces ``torch.optim.NAdam``: ε outside the root, ψ = 0.004,
    η = 2e-3, ε = 1e-8. ``convention="keras"``: ε outside, 0.96ᵗ (ψ = 1), η = 1e-3,
    ε = 1e-7, decoupled weight decay.

    The automatic path (``foreach=None``) is one call of torch's fused Adam kernel, with
    β1 and η chosen so that it applies both terms, and one lerp that puts m back (see
    :func:`._fused.fused_nadam`); equal to the loop to rounding. A small β1 (the lerp's
    weight beyond ``NADAM_MAX_WEIGHT``) or steps that differ between tensors take the
    foreach path.

    Args:
        params, lr, betas, eps, weight_decay, convention, foreach: as :class:`Adam`.
        momentum_decay: ψ ≥ 0 (None: the convention's default).

    Reference: Dozat (2016), "Incorporating Nesterov momentum into Adam".
    """

    DEFAULTS = {
        "lecture": {**Adam.DEFAULTS["lecture"], "momentum_decay": 0.0},
        "torch": {**Adam.DEFAULTS["torch"], "lr": 2e-3, "momentum_decay": 4e-3},
        "keras": {**Adam.DEFAULTS["keras"], "momentum_decay": 1.0},
    }
    _has_kernel = False

    def __init__(
        self,
        params: Any,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        momentum_decay: float | None = None,
        *,
        convention: str = "lecture",
        foreach: bool | None = None,
    ) -> None:
        ExactOptimizer.__init__(
            self,
            params,
            convention=convention,
            foreach=foreach,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
        )

    CHECKS = {**Adam.CHECKS, "momentum_decay": check_nonnegative}

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        super()._init_state(param, state, group)
        state["mu_product"] = 1.0  # Π_t, a Python float

    def _coefs(self, group: dict[str, Any], states: list[dict[str, Any]]) -> list[tuple]:
        """(μ_t, μ_{t+1}, Π_t, Π_{t+1}) per tensor, advancing each state's Π."""
        beta1, psi = group["betas"][0], group["momentum_decay"]
        coefs = []
        for s in states:
            mu, mu_next = _mu(beta1, psi, s["step"]), _mu(beta1, psi, s["step"] + 1)
            s["mu_product"] = _product(s["mu_product"], mu, group["convention"])
            coefs.append((mu, mu_next, s["mu_product"], s["mu_product"] * mu_next))
        return coefs

    def _fused(self, group, params, grads, states):  # noqa: D102
        # One call of torch's fused Adam kernel at t = 1e30 (no bias correction of its own)
        # with β1 and η replaced so that it applies both terms, then one lerp that puts m
        # back (see fused_nadam). One η and one ε for the group: one t for all.
        conv, beta2 = group["convention"], group["betas"][1]
        if (conv == "lecture" and beta2 == 0) or len({s["step"] for s in states}) != 1:
            return False
        t = states[0]["step"] + 1
        c_avg, c_grad = _nadam_coefs(group, t, states[0]["mu_product"])
        if nadam_weight(c_avg, c_grad) is None:
            return False  # a small β1: the lerp would lose precision
        kw = self._common(group, states)  # from here on the state advances
        self._coefs(group, states)
        lr, wd = kw["lr"], kw["weight_decay"]
        ms, ss = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        if wd != 0 and conv != "keras":  # L2, g ← g + λ θ: a new tensor, since the lerp
            grads = decay_many(params, grads, lr, wd, False)  # needs the g the kernel used
            wd = 0.0
        if conv == "lecture":  # s' = s + ε(1 − β2ᵗ): see fused_adam
            add_to_all(ss, self.packed(group, "exp_avg_sq", ss), kw["eps"] * (1.0 - beta2) / beta2)
            eps = 0.0
        else:  # Keras' Nadam adds ε to the corrected √ŝ, as torch does
            eps = _eps_term(kw["eps"], 1.0 - beta2**t, "torch")
        fused_nadam(params, grads, ms, ss, c_avg=c_avg, c_grad=c_grad, beta1=kw["betas"][0],
                    beta2=beta2, eps=eps, decay=lr * wd)
        return True

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        kw = self._common(group, states)
        coefs = self._coefs(group, states)
        ms, ss = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        nadam(params, grads, ms, ss, [s["step"] for s in states], coefs, foreach=foreach, **kw)


class AdaMax(Adam):
    r"""AdaMax: Adam with the infinity norm.

    m ← β1 m + (1 − β1) g;  u ← max(β2 u, |g|);  θ ← θ − η m / ((1 − β1ᵗ)(u + ε))
    (lecture and keras; η = 2e-3 lecture, 1e-3 keras; ε = 1e-7).

    Differences from ``torch.optim.Adamax``: torch adds ε before the max,
    u ← max(β2 u, |g| + ε), θ ← θ − η m / ((1 − β1ᵗ) u), ε = 1e-8, η = 2e-3;
    ``convention="torch"`` reproduces it.

    No torch kernel computes a running max. On the CPU the automatic path
    (``foreach=None``) is the loop (``foreach=False``), whose six operations on one tensor
    run in cache (θ, g, m, u and |g| of a 256×256 float32 layer: 1.3 MB) where each
    multi-tensor op streams the whole model through memory: on the 8×256 MLP ~1.1–1.4 ms a
    step against ~1.5–1.9 ms (1 thread, thread time). Multi-tensor ops on u packed in one
    flat buffer, with the temporaries in a reused buffer, took ~1.3–1.5 ms: the loop's
    allocations cost little, its passes over memory do. Elsewhere (CUDA: one launch per
    operation and tensor) it is the multi-tensor path.

    Args:
        params, lr, betas, eps, weight_decay, convention, foreach: as :class:`Adam`.

    Reference: Kingma & Ba (2015), section 7.1.
    """

    DEFAULTS = {
        "lecture": {**Adam.DEFAULTS["lecture"], "lr": 2e-3},
        "torch": {**Adam.DEFAULTS["torch"], "lr": 2e-3},
        "keras": dict(Adam.DEFAULTS["keras"]),
    }
    _second = "exp_inf"
    _has_kernel = False
    _carries_eps = False
    PACKED = ()

    def _fused(self, group, params, grads, states):  # noqa: D102
        # No kernel: on the CPU the loop, tensor by tensor in cache (see the class docstring)
        if params[0].device.type != "cpu":
            return False
        self._update(group, params, grads, states, False)
        return True

    def _update(self, group, params, grads, states, foreach):  # noqa: D102
        kw = self._common(group, states)
        ms, us = [s["exp_avg"] for s in states], [s["exp_inf"] for s in states]
        adamax(params, grads, ms, us, [s["step"] for s in states], foreach=foreach, **kw)


def _mu(beta1: float, psi: float, t: int) -> float:
    """Nadam's momentum schedule μ_t = β1 (1 − ½·0.96^(tψ)); ψ = 0 means μ_t = β1."""
    return beta1 if psi == 0 else beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))


def _product(mu_product: float, mu: float, convention: str) -> float:
    """Π_t = Π_{t−1} μ_t; torch keeps Π in a tensor of the default dtype, so round like it."""
    if convention == "torch" and torch.get_default_dtype() == torch.float32:
        return float(np.float32(mu_product) * np.float32(mu))
    return mu_product * mu


def _nadam_coefs(group: dict[str, Any], t: int, mu_product: float) -> tuple[float, float]:
    """(c_avg, c_grad) of step t: θ ← θ + (c_avg m + c_grad g) / (√s + ε') is Nadam's step
    once √(1 − β2ᵗ) has moved into the step size (as in :func:`nadam`)."""
    beta1, beta2 = group["betas"]
    psi, conv, lr = group["momentum_decay"], group["convention"], group["lr"]
    mu, mu_next = _mu(beta1, psi, t), _mu(beta1, psi, t + 1)
    prod = _product(mu_product, mu, conv)
    rbc2 = math.sqrt(1.0 - beta2**t)
    return (-lr * mu_next / (1.0 - prod * mu_next) * rbc2,
            -lr * (1.0 - mu) / (1.0 - prod) * rbc2)


def _eps_term(eps: float, bc2: float, convention: str) -> float:
    # The ε added to s (lecture, before the root) or to √s (torch, keras) once the
    # factor √(1 − β2ᵗ) has moved into the step size.
    if convention == "lecture":
        return eps * bc2
    return eps * math.sqrt(bc2) if convention == "torch" else eps


def _moments(ms, ss, grads, beta1, beta2, foreach):
    # m ← m + (1 − β1)(g − m) (lerp), s ← β2 s + (1 − β2) g⊗g
    if foreach:
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        torch._foreach_mul_(ss, beta2)
        torch._foreach_addcmul_(ss, grads, grads, value=1.0 - beta2)
    else:
        for m, s, g in zip(ms, ss, grads):
            m.lerp_(g, 1.0 - beta1)
            s.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)


def _lecture_moments(ms, ss, grads, beta1, beta2, eps, foreach):
    # m ← m + (1 − β1)(g − m); s' ← β2 s' + ε(1 − β2) + (1 − β2) g⊗g (module docstring)
    shift = eps * (1.0 - beta2)
    if foreach:
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        torch._foreach_mul_(ss, beta2)
        torch._foreach_add_(ss, shift)
        torch._foreach_addcmul_(ss, grads, grads, value=1.0 - beta2)
    else:
        for m, s, g in zip(ms, ss, grads):
            m.lerp_(g, 1.0 - beta1)
            s.mul_(beta2).add_(shift).addcmul_(g, g, value=1.0 - beta2)


def _denoms(ss, eps_terms, convention, foreach):
    # lecture: √(s + ε(1−β2ᵗ)); torch/keras: √s + ε' (a new tensor, s untouched)
    if foreach:
        if convention == "lecture":
            out = torch._foreach_add(ss, eps_terms)
            torch._foreach_sqrt_(out)
        else:
            out = torch._foreach_sqrt(ss)
            torch._foreach_add_(out, eps_terms)
        return out
    if convention == "lecture":
        return [s.add(e).sqrt_() for s, e in zip(ss, eps_terms)]
    return [s.sqrt().add_(e) for s, e in zip(ss, eps_terms)]


def adam(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, betas, eps, weight_decay, decoupled, convention, foreach):  # fmt: skip
    """Functional Adam step (formulas in :class:`Adam`); updates tensors in place.

    Args:
        params, grads, exp_avgs, exp_avg_sqs: θ, g (not modified), m, s per tensor (in
            the lecture convention s' = s + ε(1 − β2ᵗ), see the module docstring).
        steps: t per tensor (already incremented).
        lr, betas, eps, weight_decay, convention: see :class:`Adam`.
        decoupled: weight decay as θ ← θ (1 − η λ) instead of g ← g + λ θ.
        foreach: use the multi-tensor path.
    """
    beta1, beta2 = betas
    bc1 = [1.0 - beta1**t for t in steps]
    bc2 = [1.0 - beta2**t for t in steps]
    step_sizes = [-lr * math.sqrt(b2) / b1 for b1, b2 in zip(bc1, bc2)]
    if foreach:
        grads = decay_many(params, grads, lr, weight_decay, decoupled)
    else:
        grads = [decay_one(p, g, lr, weight_decay, decoupled) for p, g in zip(params, grads)]
    if convention == "lecture":  # s' = s + ε(1 − β2ᵗ) in exp_avg_sqs: the root is √s'
        _lecture_moments(exp_avgs, exp_avg_sqs, grads, beta1, beta2, eps, foreach)
        denoms = (torch._foreach_sqrt(exp_avg_sqs) if foreach
                  else [s.sqrt() for s in exp_avg_sqs])
    else:
        _moments(exp_avgs, exp_avg_sqs, grads, beta1, beta2, foreach)
        eps_terms = [_eps_term(eps, b2, convention) for b2 in bc2]
        denoms = _denoms(exp_avg_sqs, eps_terms, convention, foreach)
    if foreach:
        torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
    else:
        for p, m, d, c in zip(params, exp_avgs, denoms, step_sizes):
            p.addcdiv_(m, d, value=c)


def nadam(params, grads, exp_avgs, exp_avg_sqs, steps, coefs, *, lr, betas, eps, weight_decay, decoupled, convention, foreach):  # fmt: skip
    """Functional Nadam step (formulas in :class:`Nadam`); updates tensors in place.

    Args:
        params, grads, exp_avgs, exp_avg_sqs, steps: as :func:`adam`.
        coefs: (μ_t, μ_{t+1}, Π_t, Π_{t+1}) per tensor.
        lr, betas, eps, weight_decay, decoupled, convention, foreach: as :func:`adam`.
    """
    beta1, beta2 = betas
    rbc2 = [math.sqrt(1.0 - beta2**t) for t in steps]
    # Keras' Nadam, unlike its Adam, adds ε to the corrected √ŝ, as torch does.
    eps_conv = "torch" if convention == "keras" else convention
    c_grad = [-lr * (1.0 - mu) / (1.0 - pr) * r for (mu, _, pr, _), r in zip(coefs, rbc2)]
    c_avg = [-lr * mu1 / (1.0 - pr1) * r for (_, mu1, _, pr1), r in zip(coefs, rbc2)]
    if foreach:
        grads = decay_many(params, grads, lr, weight_decay, decoupled)
    else:
        grads = [decay_one(p, g, lr, weight_decay, decoupled) for p, g in zip(params, grads)]
    if convention == "lecture":  # s' = s + ε(1 − β2ᵗ) in exp_avg_sqs, as in adam()
        _lecture_moments(exp_avgs, exp_avg_sqs, grads, beta1, beta2, eps, foreach)
        denoms = (torch._foreach_sqrt(exp_avg_sqs) if foreach
                  else [s.sqrt() for s in exp_avg_sqs])
    else:
        _moments(exp_avgs, exp_avg_sqs, grads, beta1, beta2, foreach)
        eps_terms = [_eps_term(eps, 1.0 - beta2**t, eps_conv) for t in steps]
        denoms = _denoms(exp_avg_sqs, eps_terms, convention, foreach)
    if foreach:
        torch._foreach_addcdiv_(params, grads, denoms, c_grad)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, c_avg)
    else:
        for p, g, m, d, cg, cm in zip(params, grads, exp_avgs, denoms, c_grad, c_avg):
            p.addcdiv_(g, d, value=cg).addcdiv_(m, d, value=cm)


def adamax(params, grads, exp_avgs, exp_infs, steps, *, lr, betas, eps, weight_decay, decoupled, convention, foreach):  # fmt: skip
    """Functional AdaMax step (formulas in :class:`AdaMax`); updates tensors in place.

    Args:
        params, grads, exp_avgs, steps: as :func:`adam`.
        exp_infs: the infinity-norm accumulators u.
        lr, betas, eps, weight_decay, decoupled, convention, foreach: as :func:`adam`.
    """
    beta1, beta2 = betas
    step_sizes = [-lr / (1.0 - beta1**t) for t in steps]
    if foreach:
        grads = decay_many(params, grads, lr, weight_decay, decoupled)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_infs, beta2)
        abs_grads = torch._foreach_abs(grads)
        if convention == "torch":
            torch._foreach_add_(abs_grads, eps)
        torch._foreach_maximum_(exp_infs, abs_grads)
        del abs_grads  # spent: freed before the denominators are allocated
        # u + ε in one op (an allocation costs less than the copy and add of one more pass)
        denoms = exp_infs if convention == "torch" else torch._foreach_add(exp_infs, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
        return
    for p, g, m, u, c in zip(params, grads, exp_avgs, exp_infs, step_sizes):
        g = decay_one(p, g, lr, weight_decay, decoupled)
        m.lerp_(g, 1.0 - beta1)
        u.mul_(beta2)
        abs_g = g.abs()
        if convention == "torch":
            abs_g.add_(eps)
        torch.maximum(u, abs_g, out=u)
        p.addcdiv_(m, u if convention == "torch" else u.add(eps), value=c)
