"""The non-finite guard: a step whose loss or gradient is not finite changes nothing.

Every optimizer step is checked, on the device, with no host sync in the hot loop:

1. ``check`` computes the per-parameter gradient norms (one ``_foreach_norm``) and a 0-dim
   bool flag ``finite = isfinite(loss + Σ norms)``, the way ``GradScaler`` keeps ``found_inf``. A NaN or ±Inf anywhere in a gradient
   makes its norm non-finite; so does a finite gradient whose float32 norm overflows
   (|g| ≳ 1.8e19), a step that could only have thrown the weights away. On the CPU
   (``host`` mode below) the flag is read at once anyway, so the check is cheaper: one
   ``_amp_foreach_non_finite_check_and_unscale_`` pass (GradScaler's own check, with
   scale 1: no allocation, half the time of the norms) and the loss read on the host;
   it skips exactly the steps with a NaN or ±Inf in the loss or a gradient (a finite
   gradient is never skipped there), and a skipped step's norms are computed then, to
   name the culprit.
2. ``step`` lets the optimizer consume the flag exactly:

   - an optimizer that takes torch's AMP arguments (``_step_supports_amp_scaling``, e.g.
     ``torch.optim.Adam(fused=True)``) gets ``found_inf = ~finite``: its kernel skips the
     update and undoes its step count on the device, as under ``GradScaler``;
   - on the CPU the "device" is host memory: reading the flag waits for nothing, so the
     step is a plain ``if``;
   - elsewhere (e.g. CUDA with a non-fused optimizer) parameters and tensor state are
     copied before the step and selected back with ``torch.where(finite, new, old)``,
     bit-exact. Until the optimizer has state (its first step creates it), and for state
     kept off the device (torch's non-capturable Adam keeps ``step`` on the CPU), the flag
     is read on the host instead: one sync per step, which ``fused=True`` avoids.
3. Buffers of normalization layers (BN running statistics, ``num_batches_tracked``) are
   written by the forward pass, before the flag exists: they are copied before the forward
   (a few floats per channel) and selected back the same way after a skipped step.

The flags stay on the device; :meth:`NonFiniteGuard.end_epoch` counts the skipped steps once
per epoch and names the first skipped step and where its non-finite value
appeared.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["NonFiniteGuard", "has_batch_norm", "run_failure"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase,)
_AMP_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer (which cannot train on one sample)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class NonFiniteGuard:
    """Check each step's loss and gradients on the device and make a bad step a no-op.

    Args:
        model: whose normalization buffers are protected.
        optimizer: the optimizer whose steps are guarded.
        device: the training device.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device) -> None:
        self.optimizer, self.device = optimizer, device
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.buffers = [b for m in model.modules() if isinstance(m, _NORM_TYPES)
                        for b in m.buffers(recurse=False)]
        self._saved = [torch.empty_like(b) for b in self.buffers]
        # How a flag reaches the optimizer (see the module docstring): "amp_args", "host"
        # or "masked"; tests set it to exercise each path on the CPU.
        self.mode = ("amp_args" if getattr(optimizer, "_step_supports_amp_scaling", False)
                     else "host" if device.type == "cpu" else "masked")
        self._records: list[tuple[int, torch.Tensor, torch.Tensor, list[torch.Tensor]]] = []
        # host mode's flags and GradScaler-check buffers, allocated once
        self._true, self._false = torch.tensor(True), torch.tensor(False)
        self._found, self._one = torch.zeros(()), torch.ones(())
        self.warned = False

    def save_buffers(self) -> None:
        """Copy the normalization buffers before a forward pass (a no-op without any)."""
        if self.buffers:
            torch._foreach_copy_(self._saved, self.buffers)

    def check(self, step: int, loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """The step's finite flag (0-dim bool on the device); records it for the epoch's end.

        Four small ops beyond the norms: the flag costs about what one ``.item()`` did.
        """
        with_grad = [p for p in params if p.grad is not None]
        grads = [p.grad for p in with_grad if p.grad is not None]  # the same list, typed
        if self.mode == "host" and self._amp_checkable(grads):
            self._found.zero_()
            if grads:
                torch._amp_foreach_non_finite_check_and_unscale_(grads, self._found, self._one)
            if not self._found.item() and math.isfinite(loss.item()):
                return self._true
            finite = self._false  # rare: only skipped steps are recorded, with their norms
        else:
            finite = None
        # [loss, ‖g₁‖, …, ‖gₙ‖]: kept per step so the epoch's end can name the culprit.
        values = torch.stack([loss.detach().float(), *torch._foreach_norm(grads)])
        if finite is None:
            finite = torch.isfinite(values.sum())
        self._records.append((step, finite, values, with_grad))
        return finite

    def _amp_checkable(self, grads: list[torch.Tensor]) -> bool:
        # GradScaler's check takes floating CPU tensors; anything else keeps the norms
        return all(g.dtype in _AMP_DTYPES and g.layout == torch.strided for g in grads)

    def step(self, finite: torch.Tensor, after: Any = None) -> None:
        """Apply the optimizer step (and ``after()``, e.g. a max-norm) only if ``finite``."""
        opt = self.optimizer
        tensors = self._maskable(finite) if self.mode == "masked" else None
        if self.mode == "amp_args":
            opt.found_inf = (~finite).float()  # type: ignore[attr-defined]
            opt.grad_scale = None  # type: ignore[attr-defined]
            opt.step()
            if after is not None:  # idempotent on weights the skipped step did not move
                after()
        elif tensors is None:  # "host", or masking impossible this step
            if bool(finite):  # on the CPU a memory read: nothing to wait for
                opt.step()
                if after is not None:
                    after()
        else:
            old = [t.clone() for t in tensors]
            opt.step()
            if after is not None:
                after()
            with torch.no_grad():
                for t, o in zip(tensors, old):
                    t.copy_(torch.where(finite, t, o))
        self._restore_buffers(finite)

    def _maskable(self, finite: torch.Tensor) -> list[torch.Tensor] | None:
        """Parameters and tensor state to mask, or None when masking cannot be exact.

        New state (the optimizer's first step) has nothing to fall back to, and state kept
        off the flag's device (torch's non-fused, non-capturable Adam keeps ``step`` on the
        CPU) cannot be selected without a copy that syncs: both read the flag on the host.
        """
        opt = self.optimizer
        params = [p for g in opt.param_groups for p in g["params"]]
        state = [v for p in params for v in opt.state.get(p, {}).values()
                 if isinstance(v, torch.Tensor)]
        if not opt.state or any(t.device != finite.device for t in state):
            return None
        return params + state

    def _restore_buffers(self, finite: torch.Tensor) -> None:
        """Select the saved normalization buffers back where ``finite`` is False."""
        if self.buffers and self.mode == "host":  # the flag is a host value: no select
            if not bool(finite):  # restore only after a skipped step (3 ops per buffer saved)
                torch._foreach_copy_(self.buffers, self._saved)
        elif self.buffers:
            with torch.no_grad():
                for b, s in zip(self.buffers, self._saved):
                    b.copy_(torch.where(finite, b, s))

    def end_epoch(self, quiet_gradients: bool = False) -> tuple[int, str | None]:
        """Read the epoch's flags once: ``(steps skipped this epoch, a line or None)``.

        The line names the global step of the first skip and the parameter whose gradient
        was not finite (or the loss); it is returned once per guard, so the caller warns once.
        ``quiet_gradients`` (fp16 with a loss scaler): an overflowing gradient is the scaler's
        routine search for its scale, counted but not reported; a non-finite loss still is.
        """
        records, self._records = self._records, []
        if not records:
            return 0, None
        flags = torch.stack([r[1] for r in records])
        skipped = int((~flags).sum())
        if self.warned or skipped == 0:
            return skipped, None
        bad_steps = (~flags).nonzero()[:, 0].tolist()
        if quiet_gradients:
            bad_steps = [i for i in bad_steps if not torch.isfinite(records[i][2][0])]
            if not bad_steps:
                return skipped, None
        step, _, values, with_grad = records[bad_steps[0]]
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad) == 0:
            where = "the sum of the gradient norms overflowed"
        elif int(bad[0, 0]) == 0:
            where = "the loss is not finite"
        else:
            name = self.names.get(id(with_grad[int(bad[0, 0]) - 1]), "?")
            where = f"the gradient of {name} is not finite"
        self.warned = True
        return skipped, (f"step {step}: {where}; the step was skipped (weights, optimizer state "
                         "and batch-norm statistics left unchanged)")


def run_failure(history: list[dict[str, Any]], skipped: int, steps: int) -> str | None:
    """Why a finished run failed, or None: most steps skipped, or a non-finite final loss.

    The final loss is the last epoch's validation loss when logged (the weights are what
    count; one skipped training batch makes its epoch's mean training loss NaN), else its
    training loss. A caller (the CLI) turns a returned line into exit code 1.
    """
    if steps > 0 and skipped * 2 > steps:
        return (f"run failed: {skipped} of {steps} steps were skipped for non-finite losses or "
                "gradients; lower the learning rate, clip gradients or check the data")
    last = history[-1] if history else {}
    key = "val_loss" if "val_loss" in last else "train_loss"
    value = last.get(key)
    if value is not None and not math.isfinite(value):
        return (f"run failed: the final loss ({key}) is {value}; lower the learning rate, "
                "clip gradients or check the data")
    return None
