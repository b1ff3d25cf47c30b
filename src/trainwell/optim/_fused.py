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
  Nadam is Adam's kernel for its m̂ term plus one addcdiv for its g term;
- Keras' decoupled weight decay is one multiply before a kernel without decay.

AdaMax (a running max, not an average) has no kernel and stays on the foreach path.

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

__all__ = ["NO_BIAS_CORRECTION", "add_to_all", "fusable", "fused_adagrad", "fused_adam", "fused_rmsprop", "fused_sgd", "step_tensors"]


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
