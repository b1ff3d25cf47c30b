"""Shared machinery of trainwell's exact optimizers: the base class and argument checks.

Every optimizer in :mod:`trainwell.optim` subclasses :class:`ExactOptimizer`. The base
class resolves per-convention defaults, checks hyperparameters (also those of param groups
added later), creates state lazily and gathers ``(params, grads, states)`` of a group so
that each subclass only writes its update in two forms: a plain loop and ``torch._foreach_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import torch

from ._fused import fusable

__all__ = [
    "CONVENTIONS",
    "Convention",
    "ExactOptimizer",
    "check_betas",
    "check_interval",
    "check_nonnegative",
    "decay_many",
    "decay_one",
    "use_foreach",
]

Convention = Literal["lecture", "torch", "keras"]
CONVENTIONS: tuple[str, ...] = ("lecture", "torch", "keras")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> None:
    """Raise ``ValueError("<name>: must be >= 0, got <value>")`` unless ``value >= 0``.

    Args:
        name: the hyperparameter's name, as the user writes it.
        value: its value.

    Raises:
        ValueError: ``value`` is not a number, is negative or is NaN.
    """
    v = _as_float(name, value)
    if not v >= 0.0:  # written so that NaN fails too
        raise ValueError(f"{name}: must be >= 0, got {value!r}")


def check_interval(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> None:
    """Raise ``ValueError`` unless ``low <= value < high`` (a decay rate lives in [0, 1)).

    Args:
        name: the hyperparameter's name.
        value: its value.
        low: smallest allowed value (inclusive).
        high: bound (exclusive).

    Raises:
        ValueError: naming ``name``, the range and the value found.
    """
    v = _as_float(name, value)
    if not low <= v < high:
        raise ValueError(f"{name}: must be in [{low:g}, {high:g}), got {value!r}")


def check_betas(value: Any) -> None:
    """Check ``betas=(β1, β2)``: a pair with each decay rate in [0, 1).

    Raises:
        ValueError: ``betas`` is not a pair, or ``betas[i]`` is out of range.
    """
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"betas: must be a pair (beta1, beta2), got {value!r}")
    check_interval("betas[0]", value[0])
    check_interval("betas[1]", value[1])


def decay_one(
    p: torch.Tensor, g: torch.Tensor, lr: float, weight_decay: float, decoupled: bool
) -> torch.Tensor:
    """Apply weight decay λ to one tensor; return the gradient the update should use.

    Decoupled: θ ← θ (1 − η λ) in place, ``g`` returned as is; else ``g + λ θ`` (a new
    tensor, ``g`` untouched). λ = 0 returns ``g``.
    """
    if weight_decay == 0:
        return g
    if decoupled:
        p.mul_(1.0 - lr * weight_decay)
        return g
    return g.add(p, alpha=weight_decay)


def decay_many(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    lr: float,
    weight_decay: float,
    decoupled: bool,
) -> list[torch.Tensor]:
    """:func:`decay_one` for a list of tensors with ``torch._foreach_*`` (same operations)."""
    if weight_decay == 0:
        return grads
    if decoupled:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        return grads
    # a list already at run time; torch's stubs declare a tuple
    return list(torch._foreach_add(grads, params, alpha=weight_decay))


def rebase_eps(states: list[dict[str, Any]], key: str, eps: float,
               weights: list[float]) -> None:
    """Keep a state tensor that carries ε exact when a param group's ε changes mid-run.

    Some updates carry ε inside the root in their state (``s' = s + ε·w``, w per tensor,
    e.g. AdaGrad's w = 1) so that torch's fused kernels compute them; each state records the
    ε it carries in ``state["eps"]``. Where the group's ε differs, ``(ε − ε_state)·w`` is
    added and the record updated: afterwards s' = s + ε·w as if ε had always been ε.
    """
    for state, w in zip(states, weights):
        old = state.get("eps", eps)
        if old != eps:
            state[key].add_((eps - old) * w)
        state["eps"] = eps


def use_foreach(foreach: bool | None, params: list[torch.Tensor]) -> bool:
    """Decide the path: ``foreach`` if given, else multi-tensor when one device type is used.

    Args:
        foreach: the user's choice; ``None`` means automatic.
        params: the tensors that will be updated together.

    Returns:
        True for the ``torch._foreach_*`` path, False for the per-tensor loop.
    """
    if foreach is not None:
        return bool(foreach)
    return len({p.device.type for p in params}) <= 1


class ExactOptimizer(torch.optim.Optimizer):
    """Base of trainwell's optimizers: defaults per convention, checks, lazy state.

    A subclass sets :attr:`DEFAULTS` (convention → hyperparameter → default; a ``None``
    argument takes the convention's value), :attr:`CHECKS` (hyperparameter → check, run in
    order on every param group; override :meth:`_check` for checks across several),
    :meth:`_init_state` and :meth:`_update`, and may override :meth:`_fused` to hand the
    automatic path (``foreach=None``) to a torch fused kernel where its math is torch's.

    Args:
        params: iterable of tensors or of param-group dicts.
        convention: ``"lecture"``, ``"torch"`` or ``"keras"``.
        foreach: ``True`` multi-tensor path, ``False`` loop, ``None`` automatic.
        **hyperparameters: the subclass' hyperparameters (``None`` = convention default).

    Raises:
        ValueError: unknown convention or a hyperparameter out of range.
    """

    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}
    # state tensors kept as views of one flat buffer per param group (see _pack), for
    # updates that add one scalar to all of them each step: one op instead of one per tensor
    PACKED: ClassVar[tuple[str, ...]] = ()
    # hyperparameter -> check(name, value) raising ValueError that names it
    CHECKS: ClassVar[dict[str, Callable[[str, Any], None]]] = {}

    def __init__(
        self,
        params: Iterable[Any],
        *,
        convention: str,
        foreach: bool | None,
        **hyperparameters: Any,
    ) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: must be one of {list(CONVENTIONS)}, got {convention!r}")
        resolved = dict(hyperparameters)
        for key, value in resolved.items():
            if value is None and key in self.DEFAULTS[convention]:
                resolved[key] = self.DEFAULTS[convention][key]
        if isinstance(resolved.get("betas"), list):
            resolved["betas"] = tuple(resolved["betas"])
        defaults = {**resolved, "convention": convention, "foreach": foreach}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (see ``torch.optim.Optimizer``), checking its hyperparameters.

        Raises:
            ValueError: a hyperparameter of the group is out of range.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["convention"] not in CONVENTIONS:
            raise ValueError(
                f"convention: must be one of {list(CONVENTIONS)}, got {group['convention']!r}"
            )
        self._check(group)

    def _check(self, group: dict[str, Any]) -> None:
        for name, check in self.CHECKS.items():
            check(name, group[name])

    def _init_state(self, param: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        raise NotImplementedError

    def _fused(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
    ) -> bool:
        """Update with a fused kernel where one expresses this group's math; True if done.

        Only called on the automatic path (``foreach=None``) when :func:`fusable` holds.
        """
        return False

    def _update(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        states: list[dict[str, Any]],
        foreach: bool,
    ) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Do one update of every parameter that has a gradient.

        The learning rate and all hyperparameters are read from each param group at
        every step, so LR schedulers and manual edits of ``group["lr"]`` take effect.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            fresh = False
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group)
                    fresh = True
                params.append(p)
                grads.append(p.grad)
                states.append(state)
            if not params:
                continue
            if fresh and self.PACKED:
                self._pack(group, states)
            if group["foreach"] is None and fusable(params, grads):
                if self._fused(group, params, grads, states):
                    continue
            self._update(group, params, grads, states, use_foreach(group["foreach"], params))
        return loss


    def _pack(self, group: dict[str, Any], states: list[dict[str, Any]]) -> None:
        """Move each :attr:`PACKED` state tensor of ``states`` into one flat buffer.

        The tensors become contiguous views of the buffer, in order, with their values;
        :meth:`packed` hands the buffer out while the group's tensors are still exactly
        those views. Skipped (left as separate tensors) when they differ in dtype or
        device or are not contiguous.
        """
        packs = self.__dict__.setdefault("_packs", {})
        for key in self.PACKED:
            found = [s.get(key) for s in states]
            tensors = [t for t in found if isinstance(t, torch.Tensor) and t.is_contiguous()]
            if len(tensors) != len(found):
                continue
            if len({(t.dtype, t.device) for t in tensors}) != 1:
                continue
            flat = torch.cat([t.reshape(-1) for t in tensors])
            offset = 0
            for s, t in zip(states, tensors):
                s[key] = flat[offset:offset + t.numel()].view_as(t)
                offset += t.numel()
            packs[(id(group), key)] = (flat, [s[key].data_ptr() for s in states])

    def packed(self, group: dict[str, Any], key: str,
               tensors: list[torch.Tensor]) -> torch.Tensor | None:
        """The flat buffer whose views are exactly ``tensors`` (in order), else None."""
        entry = self.__dict__.get("_packs", {}).get((id(group), key))
        if entry is None:
            return None
        flat, ptrs = entry
        if len(tensors) != len(ptrs) or any(t.data_ptr() != p for t, p in zip(tensors, ptrs)):
            return None
        return flat

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, then the state packed again."""
        super().load_state_dict(state_dict)
        if self.PACKED:
            self.__dict__["_packs"] = {}
            for group in self.param_groups:
                states = [self.state[p] for p in group["params"] if self.state.get(p)]
                if states:
                    self._pack(group, states)


def bias_correction(beta: float, step: int) -> float:
    """``1 − βᵗ``: the factor that unbiases a zero-initialized moving average at step t."""
    return 1.0 - beta**step


def sqrt(x: float) -> float:
    """Square root of a Python float (kept here so both paths compute scalars identically)."""
    return math.sqrt(x)
