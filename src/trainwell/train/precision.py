"""Mixed precision and compilation: autocast, the fp16 loss scaler, torch.compile.

- ``"fp32"``: no autocast (the forward pass runs in the parameters' dtype).
- ``"bf16"``: ``torch.autocast(dtype=torch.bfloat16)`` around forward and loss; bf16 has
  float32's exponent range, so no loss scaling is needed.
- ``"fp16"``: ``torch.autocast(dtype=torch.float16)`` plus ``torch.amp.GradScaler``: the loss
  is multiplied by the scale S before backward so small gradients do not flush to zero in
  fp16; gradients are unscaled (÷S) before callbacks and clipping see them; S halves after a
  step with an inf/NaN gradient and doubles after 2,000 finite steps (torch's defaults).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["PRECISIONS", "autocast", "make_scaler", "compile_model"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` naming ``precision`` unless it is fp32, bf16 or fp16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(precision: str, device: torch.device) -> Any:
    """The context that runs a forward pass in ``precision`` on ``device``."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for fp16, else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)``, or ``model`` itself with one warning when compile fails here.

    Compilation is lazy: errors of a missing C++ compiler or an unsupported Python show at
    the first call, so the Trainer also falls back (with the same one warning) when that
    first call raises; see ``Trainer``.
    """
    try:
        # torch's stub types compile's result as a Callable; for a Module it is an
        # OptimizedModule, a Module
        return torch.compile(model)  # type: ignore[return-value]
    except Exception as e:  # any failure means: train uncompiled, say so once
        warn_compile_fallback(e)
        return model


def warn_compile_fallback(error: BaseException) -> None:
    """The one warning that ``compile=True`` fell back to the uncompiled model."""
    warnings.warn(f"compile: torch.compile is unavailable here ({type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}); training the model "
                  "uncompiled", RuntimeWarning, stacklevel=3)
