"""Causes: which finding explains which, and the primary finding of a run.

A run often raises several findings where one causes the others: a learning rate far too
high overflows (``non_finite``), blows up the gradients and kills ReLUs; raw inputs ×1000
saturate the first layer and explode its gradient; dead ReLUs (e.g. from negative biases)
leave the first layer an exactly-zero gradient, which also reads as vanishing. :data:`EXPLAINS`
states these arrows; :func:`rank` puts the primary finding first and each consequence right
after the cause that explains it, so repairs (tried in finding order) target the cause first.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .findings import KINDS, Finding
from .signals import finite
from .thresholds import OSCILLATION_SHARE

__all__ = [
    "EXPLAINS",
    "EXPLAINS_AT_INIT",
    "arrows",
    "confidence",
    "format_findings",
    "primary_and_consequences",
    "rank",
    "share_confidence",
]

EXPLAINS: dict[str, tuple[str, ...]] = {
    # …and lr_too_high: a head that cannot feed its loss makes the loss's trend, the LR's
    # evidence, meaningless (softmax under nll: the "loss" −p falls below 0 and its windows
    # "rose" in 56% of them while no step was large: update ratio ≤ 0.023)
    "bad_output_head": ("vanishing_gradients", "dying_relu", "lr_too_low", "saturation",
                        "lr_too_high"),
    "symmetric_init": ("vanishing_gradients", "dying_relu", "lr_too_low"),
    "unnormalized_inputs": (
        "saturation",
        "exploding_gradients",
        "non_finite",
        "lr_too_high",
        "dying_relu",
    ),
    "lr_too_high": (
        "non_finite",
        "exploding_gradients",
        "dying_relu",
        "saturation",
        "vanishing_gradients",
    ),
    "exploding_gradients": ("non_finite",),
    "dying_relu": ("vanishing_gradients",),
    "saturation": ("vanishing_gradients",),
    # dropout 0.9 makes the loss jump between batches, and λ2 0.5 pulls every weight to 0
    "over_regularized": (
        "lr_too_high",
        "vanishing_gradients",
        "dying_relu",
        "saturation",
        "lr_too_low",
    ),
}
"""Cause kind → the kinds it explains when both are found in one run (a DAG)."""

EXPLAINS_AT_INIT: tuple[str, ...] = (
    "non_finite",
    "lr_too_high",
    "dying_relu",
    "saturation",
    "vanishing_gradients",
)
"""What gradients that explode at step 0 (``evidence["at_initialization"]``) explain. No
update has happened at step 0, so the learning rate is not in them: the initialization is the
cause (e.g. N(0, 1) weights: a 20-layer tanh net's first-layer gradient is 3.4e6× the head's,
an 8-layer ReLU net starts at a loss of 6.4e6), and the huge steps, overflows and dead units
that follow are its consequences. Then ``lr_too_high`` no longer explains them."""


def arrows(findings: list[Finding]) -> dict[str, tuple[str, ...]]:
    """:data:`EXPLAINS` for this run: with gradients exploding at step 0, the exploding
    gradients explain :data:`EXPLAINS_AT_INIT` (the too-high-LR symptoms among them) instead
    of being explained by a too-high learning rate; units saturated at step 0 are not
    explained by the learning rate either (no update has happened); and a too-high-LR finding
    whose loss neither rose nor oscillated is explained by such an init cause. Still a DAG."""
    out = dict(EXPLAINS)
    at_init = {f.kind for f in findings if f.evidence.get("at_initialization") is True}
    if "exploding_gradients" in at_init:
        out["lr_too_high"] = tuple(k for k in out["lr_too_high"] if k != "exploding_gradients")
        out["exploding_gradients"] = EXPLAINS_AT_INIT
    if "saturation" in at_init:
        out["lr_too_high"] = tuple(k for k in out["lr_too_high"] if k != "saturation")
    lr = next((f for f in findings if f.kind == "lr_too_high"), None)
    if lr is not None and not _loss_rose(lr.evidence):
        # Huge steps alone, with a loss that neither rose nor oscillated, follow from an init
        # that explodes or saturates (method_tanh_normal_deep: one step of 44.8× a layer's
        # weights, loss_rising False, up share 0): the init cause comes first.
        for kind in at_init & {"exploding_gradients", "saturation"}:
            if "lr_too_high" not in out.get(kind, ()):
                out[kind] = (*out.get(kind, ()), "lr_too_high")
    return out


def _loss_rose(evidence: dict[str, Any]) -> bool:
    """lr_too_high's evidence shows the loss rising or oscillating."""
    share = evidence.get("loss_up_share")
    return evidence.get("loss_rising") is True or (
        isinstance(share, int | float) and share >= OSCILLATION_SHARE
    )


def confidence(value: float | None, threshold: float, *, above: bool = True) -> float:
    """0.5 at the threshold rising to 1 one decade beyond it (log scale), 1 without a value.

    Args:
        value: the measured signal.
        threshold: the rule's threshold.
        above: the rule fires above the threshold (False: below it).
    """
    if value is None or not finite(value) or threshold <= 0 or value <= 0:
        return 1.0
    ratio = value / threshold if above else threshold / value
    return round(0.5 + 0.5 * min(1.0, max(0.0, math.log10(ratio))), 3)


def share_confidence(share: float, threshold: float) -> float:
    """For a share in [0, 1]: 0.5 at the threshold rising linearly to 1 at a share of 1."""
    if threshold >= 1.0:
        return 1.0
    return round(0.5 + 0.5 * min(1.0, max(0.0, (share - threshold) / (1.0 - threshold))), 3)


def _explainers(
    kind: str, present: set[str], table: dict[str, tuple[str, ...]]
) -> list[str]:
    return [c for c in KINDS if c in present and kind in table.get(c, ())]


def rank(findings: list[Finding]) -> list[Finding]:
    """Order findings by cause: the primary first, then what it explains, then the rest.

    Roots (findings no other present finding explains) are ranked by confidence, then by
    the order of :data:`~trainwell.doctor.findings.KINDS`; each root is followed by the
    findings it explains (depth first). A consequence gets ``explained_by`` set to its
    first explaining cause. The arrows are :func:`arrows` of the findings (:data:`EXPLAINS`,
    turned where gradients explode at initialization).

    Args:
        findings: findings of one run, in any order.

    Returns:
        The same findings (``explained_by`` filled in), primary first.
    """
    by_kind = {f.kind: f for f in findings}
    present = set(by_kind)
    table = arrows(findings)
    cause: dict[str, str | None] = {
        k: next(iter(_explainers(k, present, table)), None) for k in present
    }
    roots = sorted(
        (k for k in present if cause[k] is None),
        key=lambda k: (-by_kind[k].confidence, KINDS.index(k)),
    )
    out: list[Finding] = []
    seen: set[str] = set()

    def visit(kind: str, by: str | None) -> None:
        if kind in seen:
            return
        seen.add(kind)
        out.append(replace(by_kind[kind], explained_by=by))
        for child in KINDS:
            if child in present and cause.get(child) == kind:
                visit(child, kind)

    for root in roots:
        visit(root, None)
    for k in KINDS:  # a cycle would leave kinds unvisited: keep them, in report order
        if k in present and k not in seen:
            visit(k, cause[k])
    return out


def primary_and_consequences(findings: list[Finding]) -> dict[str, Any]:
    """JSON-ready ``{"primary": kind | None, "consequences": [kind, …]}`` of ranked findings.

    Consequences are the findings the primary explains, directly or through another
    consequence (findings with an independent cause are neither).
    """
    if not findings:
        return {"primary": None, "consequences": []}
    primary = findings[0].kind
    chain = {primary}
    for f in findings[1:]:
        if f.explained_by in chain:
            chain.add(f.kind)
    return {"primary": primary, "consequences": [f.kind for f in findings[1:] if f.kind in chain]}


def format_findings(findings: list[Finding]) -> list[str]:
    """Terminal lines: the primary finding, then "because of it:" its consequences, then others.

    Args:
        findings: ranked findings (see :func:`rank`).

    Returns:
        Lines without newlines; one line saying the run looks healthy when there is none.
    """
    if not findings:
        return ["no finding: the run looks healthy"]
    chain = primary_and_consequences(findings)
    consequences = set(chain["consequences"])

    def lines(f: Finding, indent: str) -> list[str]:
        layers = ", ".join(f.layers[:3]) + (" …" if len(f.layers) > 3 else "")
        where = f" [{layers}]" if layers else ""
        return [
            f"{indent}{f.kind}{where} (confidence {f.confidence:.2f}): {f.explanation}",
            f"{indent}  repairs: {', '.join(f.repairs) or 'none the doctor can make'}",
        ]

    out = ["primary: " + lines(findings[0], "")[0], *lines(findings[0], "")[1:]]
    rest = findings[1:]
    if consequences:
        out.append("because of it:")
        for f in rest:
            if f.kind in consequences:
                out += lines(f, "  ")
    others = [f for f in rest if f.kind not in consequences]
    if others:
        out.append("also:")
        for f in others:
            out += lines(f, "  ")
    return out
