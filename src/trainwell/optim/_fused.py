"""Dispatch to torch's fused optimizer kernels, in every convention where one can compute it.

A fused kernel reads and writes each element once per step (parameter, gradient and state
in one pass) where the ``_foreach_`` path makes one pass per operation: on the 8×256 MLP
(473,610 parameters, 1 thread) torch's fused CPU Adam step took ~1.2–1.6 ms against
~2.7–3.9 ms for a foreach Adam (``benchmarks/floor.py``). torch 2.13 has fused CPU and CUDA
kernels for SGD, Adam, AdamW and Adagrad only; the conventions whose math is not theirs
are brought to it exactly (to rounding), each at most one extra scalar pass:

- ε inside the root (lecture Adam/AdamW/Nadam, lecture and keras AdaGrad, keras RMSProp):
  the state carries ε (s + ε·w), which obeys the kernel's update with g² + ε, so the kernel
  runs with ε = 0 (one add per step on a packed buffer, none for AdaGrad);
- η inside the velocity (lecture and keras momentum/Nesterov): the buffer is kept in the
  units of the last η and rescaled only when η changes (:mod:`.sgd`);
- RMSProp is Adam with β1 = 0 and no bias correction (t = :data:`NO_BIAS_CORRECTION`);
  Nadam is Adam's kernel with β1 and η chosen so that it applies both of Nadam's terms,
  plus one lerp that puts m back (:func:`fused_nadam`);
- Keras' decoupled weight decay is one multiply before a kernel without decay.

AdaMax (a running max, not an average) has no kernel: on the CPU its automatic path is its
loop, which keeps each tensor's operations in cache (:class:`.adam.AdaMax`).

The fused kernels order floating-point operations differently from our loop and foreach
paths, so results agree with them to rounding, not bit for bit: within 1e-6 relative in
float32 and 1e-13 in float64 over the steps of ``tests/test_optimizers.py`` (tested). They
agree exactly with ``torch.optim.<Class>(fused=True)`` (tested). The fused path is taken
only when the caller left ``foreach=None`` (automatic); ``foreach=True``/``False`` keep the
exact, documented op order.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "NADAM_MAX_WEIGHT", "NO_BIAS_CORRECTION", "add_to_all", "fusable", "fused_adagrad", "fused_adam",
    "fused_nadam", "fused_rmsprop", "fused_sgd", "nadam_weight", "step_tensors",
]


def fusable(params: list[torch.Tensor], grads: list[torch.Tensor]) -> bool:
    """True when one fused kernel call can update ``params``: one device (CPU or CUDA), one
    floating dtype, dense gradients of the parameters' dtype."""
    first = params[0]
    if first.device.type not in ("cpu", "cuda") or not first.is_floating_point():
        return False
    return all(
        p.device == first.device and p.dtype == first.dtype and g.dtype == first.dtype
        and g.layout == torch.strided and g.device == first.device
        for p, g in zip(params, grads)
    )


def step_tensors(steps: list[int] | list[float], device: torch.device) -> list[torch.Tensor]:
    """The kernels read t from tensors; ours keep t as a Python int (no device sync and the
    checkpoint layout stays as it is), so build float32 tensors like torch's for this call."""
    cache: dict[float, torch.Tensor] = {}
    for t in steps:
        if t not in cache:
            # torch.full launches a fill on the device; torch.tensor would copy from the
            # host and, from pageable memory, make the host wait each step
            cache[t] = torch.full((), float(t), dtype=torch.float32, device=device)
    return [cache[t] for t in steps]


def fused_adam(params: list[torch.Tensor], grads: list[torch.Tensor],
               exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor], steps: list[int],
               *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
               decoupled: bool, convention: str,
               packed_sqs: torch.Tensor | None = None) -> bool:
    """Adam/AdamW with torch's fused kernel; returns False where it cannot express the math.

    torch convention: the kernel's own formula. keras convention: θ ← θ − η_t m / (√s + ε̂)
    with η_t = η √(1−β2ᵗ)/(1−β1ᵗ) equals torch's θ − η m̂ / (√ŝ + ε) for ε = ε̂ / √(1−β2ᵗ),
    which needs one t for the whole group; its decay is decoupled, AdamW's. lecture
    convention (ε inside the root): ``exp_avg_sqs`` hold s' = s + ε(1 − β2ᵗ), whose update
    is the kernel's with g² + ε for g² (see :mod:`.adam`); adding ε(1 − β2)/β2 to s' first
    makes the kernel's β2 s' + (1 − β2) g² that update, and its root with ε = 0 is then
    the lecture's √(ŝ + ε). One scalar add more than torch's step (one op on
    ``packed_sqs``, the flat buffer the ``exp_avg_sqs`` are views of, when given); needs
    β2 > 0.
    """
    beta1, beta2 = betas
    if convention == "keras" and len(set(steps)) != 1:
        return False
    if convention == "lecture":
        if beta2 == 0.0:
            return False
        add_to_all(exp_avg_sqs, packed_sqs, eps * (1.0 - beta2) / beta2)
        eps = 0.0
    elif convention == "keras":
        eps = eps / math.sqrt(1.0 - beta2 ** steps[0])
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(params, grads, exp_avgs, exp_avg_sqs, [], step_tensors(steps, params[0].device),
           lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
           amsgrad=False, maximize=False)
    return True


NO_BIAS_CORRECTION = 1e30  # a step t with βᵗ = 0 exactly for every β < 1


# fused_nadam's lerp puts m back as (1 − w) n + w g with w = −c_grad / c_avg < 0: its
# rounding error grows like 1 + |w|. With β1 = 0.9, |w| is 0.11–0.21 in the lecture
# convention and at most 1.77 (torch) and 1.59 (keras) at t = 1, where their schedules
# start at μ_1 ≈ β1/2; |w| → ∞ as β1 → 0, so a small β1 (|w| > 4) takes another path.
NADAM_MAX_WEIGHT = 4.0


def nadam_weight(c_avg: float, c_grad: float) -> float | None:
    """The weight w of :func:`fused_nadam`'s lerp: 0 where none is needed, None where
    |w| > :data:`NADAM_MAX_WEIGHT` (fused_nadam is then not used)."""
    if c_avg == 0:
        return 0.0  # η = 0 or β1 = 0: the kernel's own average is m (see fused_nadam)
    w = -c_grad / c_avg
    return w if abs(w) <= NADAM_MAX_WEIGHT else None


def fused_nadam(params: list[torch.Tensor], grads: list[torch.Tensor],
                exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor], *,
                c_avg: float, c_grad: float, beta1: float, beta2: float, eps: float,
                decay: float) -> None:
    """Nadam θ ← θ + (c_avg m' + c_grad g) / (√s' + ε), m' and s' the updated moments, in
    one call of torch's fused Adam kernel and one lerp (the caller checks
    :func:`nadam_weight` first).

    Since m' = β1 m + (1 − β1) g, the numerator is c_avg β1 m + (c_avg (1 − β1) + c_grad) g
    = (c_avg + c_grad)·n with n = β1' m + (1 − β1') g, β1' = c_avg β1 / (c_avg + c_grad):
    the kernel's own first-moment update with β1' for β1. Run with that β1', the rate
    η' = −(c_avg + c_grad), no bias correction (t = :data:`NO_BIAS_CORRECTION`) and ε, it
    updates s as Adam does and applies the whole Nadam step, leaving n where m was; m' is
    then the lerp n + w (g − n), w = −c_grad / c_avg (one pass over m and g, where
    applying the g term after the kernel took a root, an addcdiv and a temporary). With
    c_avg = 0 (η = 0, or β1 = 0 where μ = 0) β1' = β1 and n is m' already. Decoupled
    weight decay θ ← θ (1 − ``decay``) is the AdamW kernel's with λ' = decay / η'. The
    caller passes the gradient with L2 decay already added (the lerp needs it). The
    coefficients carry the bias corrections and the rate (see :meth:`.Nadam._fused`).
    """
    w = nadam_weight(c_avg, c_grad)
    lr = -(c_avg + c_grad)
    beta1_k = beta1 if c_avg == 0 else c_avg * beta1 / (c_avg + c_grad)
    steps = step_tensors([NO_BIAS_CORRECTION] * len(params), params[0].device)
    kernel = torch._fused_adamw_ if decay != 0 else torch._fused_adam_
    kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=beta1_k, beta2=beta2,
           weight_decay=decay / lr if decay != 0 else 0.0, eps=eps, amsgrad=False,
           maximize=False)
    if w:
        torch._foreach_lerp_(exp_avgs, grads, w)


def add_to_all(tensors: list[torch.Tensor], flat: torch.Tensor | None, value: float) -> None:
    """Add ``value`` to every tensor: one op on ``flat`` (the buffer they are packed in,
    see ``ExactOptimizer.packed``) when given, else one per tensor."""
    if flat is not None:
        flat.add_(value)
    else:
        torch._foreach_add_(tensors, value)


def fused_rmsprop(params: list[torch.Tensor], grads: list[torch.Tensor],
                  first_moments: list[torch.Tensor], square_avgs: list[torch.Tensor], *,
                  lr: float, beta: float, eps: float, weight_decay: float,
                  convention: str, packed_avgs: torch.Tensor | None = None) -> bool:
    """RMSProp with torch's fused Adam kernel: θ ← θ − η g / (√s + ε).

    With β1 = 0 the kernel's first moment is g itself, and at t = 1e30 both bias
    corrections are exactly 1, which leaves RMSProp. ``first_moments`` are scratch buffers
    the kernel writes. keras (ε inside the root): the averages hold s' = s + ε (see
    :mod:`.rmsprop`); adding ε(1 − β)/β first makes the kernel's β s' + (1 − β) g² the
    update of s', and ε = 0 in the kernel; its weight decay is decoupled (AdamW's kernel).
    Needs β > 0 for keras.
    """
    if convention == "keras":
        if beta == 0.0:
            return False
        add_to_all(square_avgs, packed_avgs, eps * (1.0 - beta) / beta)
        eps = 0.0
    kernel = torch._fused_adamw_ if convention == "keras" else torch._fused_adam_
    steps = step_tensors([NO_BIAS_CORRECTION] * len(params), params[0].device)
    kernel(params, grads, first_moments, square_avgs, [], steps, lr=lr, beta1=0.0, beta2=beta,
           weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False)
    return True


def fused_sgd(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor],
              *, lr: float, momentum: float, weight_decay: float, nesterov: bool) -> bool:
    """SGD with torch's fused kernel: b ← μ b + g; θ ← θ − η b (Nesterov θ − η (g + μ b)).

    The torch convention's formula, and the lecture's and Keras' once their buffers are in
    the units of this step's η (see :mod:`.sgd`). Our buffers start at zero, so μ·0 + g is
    torch's first-step copy of g and the kernel runs with ``is_first_step=False`` from the
    first step on.
    """
    torch._fused_sgd_(params, grads, [] if momentum == 0 else bufs, weight_decay=weight_decay,
                      momentum=momentum, lr=lr, dampening=0.0, nesterov=nesterov,
                      maximize=False, is_first_step=False)
    return True


def fused_adagrad(params: list[torch.Tensor], grads: list[torch.Tensor],
                  sums: list[torch.Tensor], *, lr: float, eps: float, weight_decay: float,
                  convention: str) -> bool:
    """AdaGrad with torch's fused kernel: θ ← θ − η g / (√s + ε).

    torch convention: the kernel's formula. lecture and keras (ε inside the root): the
    sums hold s + ε (see :mod:`.adagrad`), so the kernel runs with ε = 0; Keras' decoupled
    weight decay θ ← θ (1 − η λ) is one multiply before it. The kernel's step counter only
    feeds ``lr_decay``, which is 0 here, so t = 1 is passed.
    """
    if convention != "torch":
        eps = 0.0
        if convention == "keras" and weight_decay != 0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
            weight_decay = 0.0
    ones = step_tensors([1] * len(params), params[0].device)
    torch._fused_adagrad_(params, grads, sums, ones, lr=lr, lr_decay=0.0,
                          weight_decay=weight_decay, eps=eps, maximize=False)
    return True
