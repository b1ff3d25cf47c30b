"""Numbers and evidence in words: what the report and the terminal show a person.

A finding's ``evidence`` stays a JSON-ready dict (``doctor.json``, ``--json``); this module
turns it into sentences with numbers (:func:`evidence_sentences`), and formats the values a
report prints: metrics at 4 significant digits (:func:`num`), shares and accuracies as
percentages (:func:`pct`), a change of a setting as ``key: old → new`` (:func:`change_line`)
and a patch of dotted keys as TOML lines (:func:`toml_lines`). Nothing here knows a config:
keys and values are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "change_line",
    "changed",
    "evidence_sentences",
    "lookup",
    "metric_change",
    "num",
    "pct",
    "toml_lines",
    "value_text",
]

DIGITS = 4  # significant digits of every measured number shown (evidence is rounded so too)


def _real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def num(v: Any, digits: int = DIGITS) -> str:
    """A number at ``digits`` significant digits (``5.698e36``, ``0.05``, ``160``); "n/a"
    for None; NaN and ±inf spelled out.

    Args:
        v: an int, float or None.
        digits: significant digits of a float.
    """
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if not _real(v):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "−inf"
    text = f"{v:.{digits}g}"
    if "e" in text:  # 5.698e+36 → 5.698e36, 1e-05 → 1e-5
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


def pct(v: Any, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage (``0.7344`` → ``73.4%``); "n/a" for None/NaN."""
    if not _real(v) or not math.isfinite(v):
        return "n/a"
    return f"{100 * float(v):.{decimals}f}%"


def metric_change(before: Any, after: Any, *, accuracy: bool) -> str:
    """``before → after`` of one metric, with the gain: ``6.9% → 79.9% (+73.0 points)`` for
    an accuracy, ``NaN → 1.203`` or ``2.31 → 0.6327 (−72.6%)`` for a loss."""
    show = pct if accuracy else num
    text = f"{show(before)} → {show(after)}"
    if not (_real(before) and _real(after) and math.isfinite(before) and math.isfinite(after)):
        return text
    if accuracy:
        return f"{text} ({100 * (after - before):+.1f} points)"
    if before > 0:
        rel = after / before - 1
        return f"{text} ({'+' if rel >= 0 else '−'}{abs(rel):.1%})"
    return text


def value_text(v: Any) -> str:
    """A setting's value as a person reads it: TOML spelling, floats at 4 significant
    digits, None as "unset"."""
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return num(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, Mapping):
        inner = ", ".join(f"{k} = {value_text(x)}" for k, x in v.items() if x is not None)
        return "{" + inner + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    return str(v)


def changed(patch: Mapping[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of ``patch`` that change ``settings`` (all of them without settings)."""
    if settings is None:
        return dict(patch)
    return {k: v for k, v in patch.items() if lookup(settings, k) != v}


def change_line(key: str, before: Any, after: Any) -> str:
    """One change of a setting: ``optim.lr: 10 → 0.05``."""
    return f"{key}: {value_text(before)} → {value_text(after)}"


_MISSING = object()


def lookup(tree: Mapping[str, Any] | None, dotted: str) -> Any:
    """The value at ``dotted`` (``"optim.clip.kind"``) in nested mappings; None when absent
    (an unset field is left out of a written config)."""
    node: Any = tree or {}
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return None
    return node


def _toml(v: Any) -> str:
    """A value in exact TOML (floats as ``repr``: the very number written to the file)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items() if x is not None) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return _toml(str(v))


def toml_lines(patch: Mapping[str, Any]) -> list[str]:
    """A patch of dotted keys as TOML, one ``[section]`` per table in first-seen order;
    a key set to None (unset) is written as the comment ``# key = (unset)``.

    Example: ``{"optim.lr": 0.05, "model.batch_norm": True}`` →
    ``["[optim]", "lr = 0.05", "", "[model]", "batch_norm = true"]``.
    """
    sections: dict[str, list[str]] = {}
    for key, value in patch.items():
        table, _, name = key.rpartition(".")
        line = f"# {name} = (unset)" if value is None else f"{name} = {_toml(value)}"
        sections.setdefault(table, []).append(line)
    out: list[str] = []
    for table, lines in sections.items():
        if out:
            out.append("")
        if table:
            out.append(f"[{table}]")
        out += lines
    return out


# ---- evidence in sentences ---------------------------------------------------------------
def _per_layer(values: Any, show: Callable[[Any], str]) -> str:
    if not isinstance(values, Mapping):
        return show(values)
    return ", ".join(f"{name} {show(v)}" for name, v in values.items())


def _loss(e: Mapping[str, Any]) -> str | None:
    a, b = e.get("loss_start"), e.get("loss_end")
    if a is None and b is None:
        return None
    return f"The training loss went from {num(a)} at the start to {num(b)} at the end."


def _accuracy(e: Mapping[str, Any]) -> str | None:
    a, c = e.get("accuracy"), e.get("chance_accuracy")
    if a is None:
        return None
    chance = f" (chance level: {pct(c)})" if c is not None else ""
    return f"The run ends at {pct(a)} accuracy{chance}."


def _non_finite(e: Mapping[str, Any]) -> str | None:
    n, first = e.get("non_finite_steps"), e.get("first_step")
    where = f", the first at step {first}" if first is not None else ""
    return f"{n} steps had a non-finite loss or gradient (inf/NaN){where}."


def _overfit(e: Mapping[str, Any]) -> str | None:
    best, end = e.get("val_loss_best"), e.get("val_loss_end")
    rise, since = e.get("val_loss_rise"), e.get("epochs_since_best")
    text = (
        f"The validation loss was lowest at epoch {e.get('best_val_epoch')} ({num(best)}) and "
        f"ended at {num(end)}"
    )
    if rise is not None:
        text += f", {pct(rise)} above its best"
    if since is not None:
        text += f", {since} epochs later"
    return text + "."


def _head(e: Mapping[str, Any]) -> str | None:
    act, out, classes = e.get("output_activation"), e.get("out_features"), e.get("num_classes")
    units = "The head has " + (f"{out} output{'' if out == 1 else 's'}" if out else "outputs")
    text = f"{units} with {'no activation (logits)' if act is None else f'a {act} activation'}"
    if e.get("loss"):
        text += f", under the {e['loss']} loss"
    if classes:
        text += f", for {classes} classes"
    return text + "."


def _targets(e: Mapping[str, Any]) -> str | None:
    return f"The targets range from {num(e.get('target_min'))} to {num(e.get('target_max'))}."


def _init_grads(e: Mapping[str, Any]) -> str | None:
    parts = []
    if e.get("init_grad_norm") is not None:
        parts.append(f"a gradient norm of {num(e['init_grad_norm'])}")
    if e.get("init_grad_ratio_first_to_head") is not None:
        parts.append(f"a first-layer/head gradient ratio of {num(e['init_grad_ratio_first_to_head'])}")
    return f"At step 0, before any update: {' and '.join(parts)}." if parts else None


_One = Callable[[Any], str | None]
_SINGLE: dict[str, _One] = {
    "loss_rising": lambda v: "The loss rose over the run." if v else "The loss did not rise "
    "over the run.",
    "loss_up_share": lambda v: f"The loss went up in {pct(v)} of the loss windows.",
    "update_ratio_max_layer": lambda v: (
        f"A typical step changed a layer's weights by {num(v)} of their norm (median "
        "‖ΔW‖/‖W‖ of the layer that moves most)."
    ),
    "update_ratio_peak": lambda v: f"The largest single step moved a layer by {num(v)}× its weights.",
    "input_scale": lambda v: f"The input features have a scale of {num(v)} (standardized: 1).",
    "max_grad_ratio_first_to_head": lambda v: (
        f"The first layer's gradient norm reached {num(v)}× the head's."
    ),
    "global_grad_norm_median": lambda v: f"The median global gradient norm was {num(v)}.",
    "at_initialization": lambda v: (
        "The gradients were already that large at step 0, before any update." if v else None
    ),
    "saturated_share": lambda v: (
        f"Share of saturated outputs (|z| ≥ 5) by layer: {_per_layer(v, pct)}."
    ),
    "dead_share": lambda v: (
        f"Share of dead ReLU units (0 on every probe sample) by layer: {_per_layer(v, pct)}."
    ),
    "bias_mean_start": lambda v: f"The mean bias at the first probe was {num(v)}.",
    "unit_spread": lambda v: (
        f"Spread of the units at the start (0 = identical units) by layer: {_per_layer(v, num)}."
    ),
    "grad_ratio_first_to_head": lambda v: (
        f"The first layer's gradient norm was {num(v)} of the head's (median over the probes)."
    ),
    "first_layer_grad_norm": lambda v: f"The first layer's gradient norm was {num(v)} (median).",
    "head_update_ratio": lambda v: (
        f"Each step changed the head's weights by {num(v)} of their norm (median)."
    ),
    "loss_drop": lambda v: f"The training loss fell by {pct(v)} over the run.",
    "train_loss_end": lambda v: f"The training loss ended at {num(v)}.",
    "accuracy_gap": lambda v: (
        f"Training accuracy ends {100 * v:.1f} points above validation accuracy."
        if _real(v) else None
    ),
    "val_accuracy_drop": lambda v: (
        f"Validation accuracy ended {100 * v:.1f} points below its value at the best epoch."
        if _real(v) else None
    ),
    "head_zero_grad_share": lambda v: (
        f"{pct(v)} of the head's gradient entries are exactly 0." if v is not None else None
    ),
}

_GROUPS: tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], str | None]], ...] = (
    (("non_finite_steps", "first_step"), _non_finite),
    (("output_activation", "loss", "out_features", "num_classes"), _head),
    (("target_min", "target_max"), _targets),
    (("best_val_epoch", "val_loss_best", "val_loss_end", "val_loss_rise", "epochs_since_best"),
     _overfit),
    (("init_grad_norm", "init_grad_ratio_first_to_head"), _init_grads),
)
_LAST: tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], str | None]], ...] = (
    (("accuracy", "chance_accuracy"), _accuracy),
    (("loss_start", "loss_end"), _loss),
)


def evidence_sentences(evidence: Mapping[str, Any]) -> list[str]:
    """A finding's evidence as sentences with numbers, in the evidence's order; the run's
    accuracy and loss (common to every finding) last. An unknown key gives ``key: value``.

    Args:
        evidence: a :class:`~trainwell.doctor.findings.Finding`'s ``evidence``.

    Returns:
        One sentence per fact (a None value says nothing and is left out).
    """
    out: list[str] = []
    done: set[str] = set()
    last = {k for keys, _ in _LAST for k in keys}
    for key, value in evidence.items():
        if key in done or key in last:
            continue
        group = next(((keys, fn) for keys, fn in _GROUPS if key in keys), None)
        if group is not None:
            keys, fn = group
            done.update(keys)
            sentence = fn(evidence)
        elif key in _SINGLE:
            done.add(key)
            sentence = None if value is None else _SINGLE[key](value)
        else:
            done.add(key)
            sentence = None if value is None else f"{key.replace('_', ' ')}: {_plain(value)}."
        if sentence:
            out.append(sentence)
    for keys, fn in _LAST:
        if any(evidence.get(k) is not None for k in keys):
            sentence = fn(evidence)
            if sentence:
                out.append(sentence)
    return out


def _plain(v: Any) -> str:
    if isinstance(v, Mapping):
        return _per_layer(v, _plain)
    return num(v) if _real(v) or v is None or isinstance(v, bool) else str(v)
