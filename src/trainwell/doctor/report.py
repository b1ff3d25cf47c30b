"""The health report: one self-contained ``report.html`` with embedded PNG plots.

Plots (matplotlib, Agg backend, embedded as base64 ``data:`` URIs so the file works
offline and alone): loss and accuracy curves, a layers × steps heat map of log10
gradient norms, dead and saturated shares per layer, activation histograms at the first
and last probe, the learning rate per epoch; then the findings with their evidence and
the repairs tried (from ``doctor.json`` when the doctor wrote one).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib is imported when a report is written (start-up time)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from ..train.checkpoint import atomic_write_text
from .findings import Finding, Health
from .rules import diagnose_health

__all__ = ["render_report", "write_report"]


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _legend(ax: Axes, size: int) -> None:
    """A legend only when the axis has labelled artists (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def _plots(health: Health) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    out: list[tuple[str, str]] = []
    ep = health.epochs
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    steps = [(i, v) for i, v in enumerate(health.losses) if _ok(v)]
    if steps:
        a1.plot([s for s, _ in steps], [v for _, v in steps], lw=0.6, alpha=0.5, label="step loss")
    per = max(1, len(health.losses) // max(1, len(ep))) if ep else 1
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        pts = [((i + 1) * per, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            a1.plot(*zip(*pts), style, ms=3, label=key)
    a1.set_xlabel("step")
    a1.set_ylabel("loss")
    a1.set_yscale("log" if steps and min(v for _, v in steps) > 0 else "linear")
    _legend(a1, 7)
    for key in ("train_accuracy", "val_accuracy"):
        pts = [(i + 1, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            a2.plot(*zip(*pts), "-o", ms=3, label=key)
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    _legend(a2, 7)  # a regression run has no accuracy curves
    out.append(("Loss and accuracy", _png(fig)))

    names = health.layer_names
    if names and health.probes:
        grid = np.full((len(names), len(health.probes)), np.nan)
        for j, rec in enumerate(health.probes):
            for i, n in enumerate(names):
                g = rec.get("layers", {}).get(n, {}).get("grad_norm")
                if _ok(g):
                    grid[i, j] = math.log10(max(g, 1e-300))
        fig, ax = plt.subplots(figsize=(10, 0.25 * len(names) + 1.5))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ticks = list(range(0, len(health.probes), max(1, len(health.probes) // 10)))
        ax.set_xticks(ticks, [health.probes[t]["step"] for t in ticks], fontsize=7)
        ax.set_xlabel("step")
        fig.colorbar(im, ax=ax, label="log10 ‖g‖")
        out.append(("Gradient norms per layer (log10)", _png(fig)))

        fig, ax = plt.subplots(figsize=(10, 3))
        x = np.arange(len(names))
        for k, (key, label) in enumerate(
            (("dead_share", "dead"), ("saturated_share", "saturated"))
        ):
            vals = [_median([v for _, v in health.series(n, key)]) for n in names]
            ax.bar(x + 0.4 * k, vals, width=0.4, label=label)
        ax.set_xticks(x + 0.2, names, rotation=60, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("median share")
        ax.legend(fontsize=7)
        out.append(("Dead and saturated units per layer", _png(fig)))

        fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
        for ax, rec, title in (
            (axes[0], health.probes[0], "first probe"),
            (axes[1], health.probes[-1], "last probe"),
        ):
            for n in names:
                st = rec.get("layers", {}).get(n, {})
                if "hist" in st:
                    lo, hi = st["hist_range"]
                    edges = np.linspace(lo, hi, len(st["hist"]) + 1)
                    ax.stairs(np.asarray(st["hist"]) / max(1, sum(st["hist"])), edges, label=n)
            ax.set_title(f"{title} (step {rec['step']})", fontsize=8)
            ax.set_xlabel("activation")
        axes[0].set_ylabel("share")
        if len(names) <= 8:
            _legend(axes[1], 6)
        out.append(("Activation histograms", _png(fig)))

    lrs = [(i + 1, e["lr"]) for i, e in enumerate(ep) if _ok(e.get("lr"))]
    if lrs:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        ax.plot(*zip(*lrs), "-o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        out.append(("Learning rate", _png(fig)))
    return out


def render_report(
    health: Health,
    findings: list[Finding],
    doctor: dict | None = None,
    title: str = "trainwell health report",
) -> str:
    """The report as one HTML string (plots embedded as PNG data URIs).

    Args:
        health: the run's health record.
        findings: the findings to list with their evidence and repairs.
        doctor: the doctor's result dict (``trials``, ``chosen``) if a repair ran.
        title: page title.

    Returns:
        A complete HTML document.
    """
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
        "table{border-collapse:collapse}img{max-width:100%}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    parts.append("<h2>Findings</h2>")
    if not findings:
        parts.append("<p id='healthy'>No finding: the run looks healthy.</p>")
    else:
        parts.append(
            "<table id='findings'><tr><th>kind</th><th>layers</th><th>evidence</th>"
            "<th>explanation</th><th>repairs</th></tr>"
        )
        for i, f in enumerate(findings):
            # The primary finding first; each consequence names the finding that explains it.
            role = (
                "primary" if i == 0 else (f"because of {f.explained_by}" if f.explained_by else "")
            )
            kind = f"{f.kind} ({role}, confidence {f.confidence:.2f})" if role else f.kind
            parts.append(
                f"<tr><td>{e(kind)}</td><td>{e(', '.join(f.layers[:6]))}</td>"
                f"<td><code>{e(json.dumps(f.evidence))}</code></td>"
                f"<td>{e(f.explanation)}</td><td>{e(', '.join(f.repairs))}</td></tr>"
            )
        parts.append("</table>")
    if doctor and doctor.get("trials"):
        parts.append(
            "<h2>Repairs tried</h2><table id='trials'><tr><th>repair</th>"
            "<th>val accuracy</th><th>val loss</th></tr>"
        )
        for t in doctor["trials"]:
            parts.append(
                f"<tr><td>{e(str(t.get('repair')))}</td><td>{e(str(t.get('val_accuracy')))}"
                f"</td><td>{e(str(t.get('val_loss')))}</td></tr>"
            )
        parts.append(f"</table><p>chosen: <b>{e(str(doctor.get('chosen')))}</b></p>")
    for caption, uri in _plots(health):
        parts.append(f"<h2>{e(caption)}</h2><img alt='{e(caption)}' src='{uri}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    run_dir: str | Path, *, health: Health | None = None, findings: list[Finding] | None = None
) -> Path:
    """Write ``run_dir/report.html`` from the run's ``health.jsonl`` (or the given health).

    Args:
        run_dir: the run folder.
        health: the record; read from ``run_dir/health.jsonl`` when None.
        findings: the findings; computed by the rules when None.

    Returns:
        The path of the report.

    Raises:
        UserError: no ``health.jsonl`` in ``run_dir`` and no ``health`` given.
    """

    run_dir = Path(run_dir)
    health = Health.read(run_dir / "health.jsonl") if health is None else health
    findings = diagnose_health(health) if findings is None else findings
    doctor = None
    if (run_dir / "doctor.json").is_file():
        doctor = json.loads((run_dir / "doctor.json").read_text(encoding="utf-8"))
    text = render_report(health, findings, doctor, title=f"trainwell health report: {run_dir.name}")
    path = run_dir / "report.html"
    atomic_write_text(path, text)
    return path
