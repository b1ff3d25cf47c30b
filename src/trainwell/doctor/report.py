"""The health report: one self-contained ``report.html`` a person reads, with PNG plots.

From the top: the summary (primary finding, status, the kept repair as exact config changes
and its patch as TOML, the final metrics before/after/yardstick), the findings with their
evidence in sentences (:mod:`.wording`), the repairs tried (``doctor.json`` when the doctor
wrote one) each with its change and before → after metrics, then the plots (matplotlib, Agg
backend, full page width, fonts ≥ 10 pt, legends and labelled layers, embedded as base64
``data:`` URIs so the file works offline and alone): loss and accuracy curves, a layers ×
steps heat map of log10 gradient norms, dead and saturated shares per layer, activation
histograms at the first and last probe, the learning rate per epoch.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib is imported when a report is written (start-up time)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from ..train.checkpoint import atomic_write_text
from .findings import Finding, Health
from .repairs import REPAIRS
from .rules import diagnose_health
from .wording import (
    change_line,
    changed,
    evidence_sentences,
    lookup,
    metric_change,
    num,
    pct,
    toml_lines,
    value_text,
)

__all__ = ["render_report", "write_report"]


FONT = 11  # points: axis labels and titles (ticks and legends 10): readable at full width
WIDTH = 11.0  # inches at 100 dpi: ~1100 px, the page's width
DPI = 100


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})  # constrained layout: exactly WIDTH × DPI px
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend only when the axis has labelled artists (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=FONT - 1, **kwargs)


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def _style() -> dict[str, Any]:
    """matplotlib settings of every report plot (fonts ≥ 10 pt)."""
    return {
        "font.size": FONT,
        "axes.titlesize": FONT + 1,
        "axes.labelsize": FONT,
        "xtick.labelsize": FONT - 1,
        "ytick.labelsize": FONT - 1,
        "legend.fontsize": FONT - 1,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.constrained_layout.use": True,  # labels and legends inside the figure
    }


def _plots(health: Health) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with plt.rc_context(_style()):  # type: ignore[arg-type]  # keys checked by matplotlib
        return _draw(health)


def _draw(health: Health) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt
    import numpy as np

    out: list[tuple[str, str]] = []
    ep = health.epochs
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(WIDTH, 4))
    steps = [(i, v) for i, v in enumerate(health.losses) if _ok(v)]
    if steps:
        a1.plot([s for s, _ in steps], [v for _, v in steps], lw=0.6, alpha=0.5,
                label="training loss per step")
    per = max(1, len(health.losses) // max(1, len(ep))) if ep else 1
    for key, style, label in (("train_loss", "-o", "training loss (epoch mean)"),
                              ("val_loss", "-s", "validation loss")):
        pts = [((i + 1) * per, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            a1.plot(*zip(*pts), style, ms=4, label=label)
    a1.set_xlabel("optimizer step")
    a1.set_ylabel("loss")
    a1.set_title("Loss")
    values = [v for _, v in steps]
    wide = bool(values) and min(values) > 0 and max(values) / min(values) > 10
    a1.set_yscale("log" if wide else "linear")  # a log axis only where the loss spans decades
    _legend(a1)
    for key, label in (("train_accuracy", "training accuracy"),
                       ("val_accuracy", "validation accuracy")):
        pts = [(i + 1, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            a2.plot(*zip(*pts), "-o", ms=4, label=label)
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.set_title("Accuracy")
    _legend(a2)  # a regression run has no accuracy curves
    out.append(("Loss and accuracy", _png(fig)))

    names = health.layer_names
    if names and health.probes:
        grid = np.full((len(names), len(health.probes)), np.nan)
        for j, rec in enumerate(health.probes):
            for i, n in enumerate(names):
                g = rec.get("layers", {}).get(n, {}).get("grad_norm")
                if _ok(g):
                    grid[i, j] = math.log10(max(g, 1e-300))
        fig, ax = plt.subplots(figsize=(WIDTH, 0.32 * len(names) + 2))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.grid(False)
        ax.set_yticks(range(len(names)), names)
        ticks = list(range(0, len(health.probes), max(1, len(health.probes) // 10)))
        ax.set_xticks(ticks, [health.probes[t]["step"] for t in ticks])
        ax.set_xlabel("optimizer step (probe)")
        ax.set_ylabel("layer (input side at the top)")
        fig.colorbar(im, ax=ax, label="log10 of the gradient norm ‖∂J/∂W‖")
        out.append(("Gradient norms per layer (log10)", _png(fig)))

        fig, ax = plt.subplots(figsize=(WIDTH, 0.32 * len(names) + 1.8))
        y = np.arange(len(names))
        for k, (key, label) in enumerate(
            (("dead_share", "dead units (0 on every probe sample)"),
             ("saturated_share", "saturated outputs (|z| ≥ 5)"))
        ):
            vals = [_median([v for _, v in health.series(n, key)]) for n in names]
            ax.barh(y + 0.4 * k, vals, height=0.4, label=label)
        ax.set_yticks(y + 0.2, names)
        ax.invert_yaxis()  # input side at the top, as in the heat map
        ax.set_xlim(0, 1)
        ax.set_xlabel("median share over the probes")
        ax.set_ylabel("layer")
        _legend(ax, loc="lower right")
        out.append(("Dead and saturated units per layer", _png(fig)))

        # One colour per layer from input (dark) to head (yellow), legend below both panels.
        colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(names)))
        ncol = min(len(names), 6)
        rows = math.ceil(len(names) / ncol)
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4 + 0.3 * rows), sharey=True)
        for ax, rec, title in (
            (axes[0], health.probes[0], "first probe"),
            (axes[1], health.probes[-1], "last probe"),
        ):
            for n, colour in zip(names, colours, strict=True):
                st = rec.get("layers", {}).get(n, {})
                if "hist" in st:
                    lo, hi = st["hist_range"]
                    edges = np.linspace(lo, hi, len(st["hist"]) + 1)
                    ax.stairs(np.asarray(st["hist"]) / max(1, sum(st["hist"])), edges, label=n,
                              color=colour, lw=1.2)
            ax.set_title(f"{title} (step {rec['step']})")
            ax.set_xlabel("activation value (after the layer's activation)")
        axes[0].set_ylabel("share of the layer's outputs")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncol=ncol,
                       title="layer (input side first)", fontsize=FONT - 1)
        out.append(("Activation histograms", _png(fig)))

    lrs = [(i + 1, e["lr"]) for i, e in enumerate(ep) if _ok(e.get("lr"))]
    if lrs:
        fig, ax = plt.subplots(figsize=(WIDTH, 3))
        ax.plot(*zip(*lrs), "-o", ms=4, label="learning rate at the epoch's end")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        values = [v for _, v in lrs]
        if min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        _legend(ax)
        out.append(("Learning rate", _png(fig)))
    return out


_CSS = (
    "body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 12px;font-size:15px;"
    "line-height:1.4}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;"
    "text-align:left}table{border-collapse:collapse;margin:8px 0}img{width:100%;height:auto}"
    "pre{background:#f4f4f4;padding:8px}td.n{text-align:right;white-space:nowrap}"
    "ul{margin:0;padding-left:18px}.status{font-size:18px}"
)


def _settings_of(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config as nested dicts: ``config.toml`` of the run folder, or of
    its ``diagnostic/`` run (where the doctor keeps the config as given)."""
    for path in (run_dir / "config.toml", run_dir / "diagnostic" / "config.toml"):
        if path.is_file():
            try:
                return tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                return None
    return None


def _changes(patch: Any, settings: Mapping[str, Any] | None) -> list[str]:
    """``key: old → new`` lines of a patch (old values from ``settings``; unchanged keys
    left out; without settings ``key → new``)."""
    if not isinstance(patch, Mapping):
        return []
    if settings is None:
        return [f"{k} → {value_text(v)}" for k, v in patch.items()]
    return [change_line(k, lookup(settings, k), v) for k, v in changed(patch, settings).items()]


def _summary(health: Health, findings: list[Finding], doctor: Mapping[str, Any] | None,
             settings: Mapping[str, Any] | None) -> list[str]:
    """The top of the page: status, what was changed, and the final metrics."""
    e = html.escape
    parts = ["<h2>Summary</h2>"]
    if findings:
        f = findings[0]
        parts.append(f"<p>Primary finding: <b>{e(f.kind)}</b>: {e(f.explanation)}.</p>")
    if doctor:
        chosen = doctor.get("chosen")
        status = str(doctor.get("status"))
        changes = _changes(doctor.get("patch"), settings) if chosen else []
        kept = (f"kept repair <b>{e(str(chosen))}</b>: <code>{e('; '.join(changes))}</code>"
                if chosen else "no repair kept: the config is unchanged")
        judged = doctor.get("judged_at_epochs")
        when = f" (judged against the yardstick at {judged} epochs)" if judged else ""
        parts.append(f"<p class='status' id='status'>Status: <b>{e(status)}</b>{e(when)}; "
                     f"{kept}.</p>")
        if chosen and isinstance(doctor.get("patch"), Mapping):
            toml = "\n".join(toml_lines(changed(doctor["patch"], settings)))
            parts.append("<p>The applied patch, as it stands in <code>repaired.toml</code>:</p>"
                         f"<pre id='patch'>{e(toml)}</pre>")
        rows = [("before (the config as given)", doctor.get("before")),
                ("after (the repaired config)", doctor.get("after")),
                ("yardstick (known-good recipe, same network)", doctor.get("yardstick"))]
        parts.append("<table id='metrics'><tr><th>run</th><th>epochs</th><th>val accuracy</th>"
                     "<th>test accuracy</th><th>val loss</th><th>test loss</th></tr>")
        for label, m in rows:
            if not m:
                continue
            parts.append(
                f"<tr><td>{e(label)}</td><td class='n'>{e(num(m.get('epochs')))}</td>"
                f"<td class='n'>{pct(m.get('val_accuracy'))}</td>"
                f"<td class='n'>{pct(m.get('test_accuracy'))}</td>"
                f"<td class='n'>{e(num(m.get('val_loss')))}</td>"
                f"<td class='n'>{e(num(m.get('test_loss')))}</td></tr>"
            )
        parts.append("</table>")
    elif health.epochs:
        last = health.epochs[-1]
        parts.append("<table id='metrics'><tr><th>after epoch</th><th>train loss</th>"
                     "<th>train accuracy</th><th>val loss</th><th>val accuracy</th></tr>"
                     f"<tr><td class='n'>{e(num(last.get('epoch', len(health.epochs))))}</td>"
                     f"<td class='n'>{e(num(last.get('train_loss')))}</td>"
                     f"<td class='n'>{pct(last.get('train_accuracy'))}</td>"
                     f"<td class='n'>{e(num(last.get('val_loss')))}</td>"
                     f"<td class='n'>{pct(last.get('val_accuracy'))}</td></tr></table>")
    return parts


def _findings(findings: list[Finding]) -> list[str]:
    e = html.escape
    parts = ["<h2>Findings</h2>"]
    if not findings:
        parts.append("<p id='healthy'>No finding: the run looks healthy.</p>")
        return parts
    parts.append(
        "<table id='findings'><tr><th>finding</th><th>layers</th><th>evidence</th>"
        "<th>explanation</th><th>repairs, best first</th></tr>"
    )
    for i, f in enumerate(findings):
        # The primary finding first; each consequence names the finding that explains it.
        role = "primary" if i == 0 else (f"because of {f.explained_by}" if f.explained_by else "")
        kind = f"{f.kind} ({role}, confidence {f.confidence:.2f})" if role else f.kind
        layers = ", ".join(f.layers[:6]) + (f" and {len(f.layers) - 6} more"
                                            if len(f.layers) > 6 else "")
        evidence = "".join(f"<li>{e(s)}</li>" for s in evidence_sentences(f.evidence))
        repairs = "".join(
            f"<li><b>{e(r)}</b>: {e(REPAIRS[r].description)}</li>" if r in REPAIRS
            else f"<li>{e(r)}</li>" for r in f.repairs
        )
        parts.append(
            f"<tr><td>{e(kind)}</td><td>{e(layers)}</td><td><ul>{evidence}</ul></td>"
            f"<td>{e(f.explanation)}</td><td><ul>{repairs}</ul></td></tr>"
        )
    parts.append("</table>")
    return parts


def _trials(doctor: Mapping[str, Any], settings: Mapping[str, Any] | None) -> list[str]:
    """Each repair tried: the exact change and its metrics against the diagnostic run's."""
    e = html.escape
    base = doctor.get("diagnostic") or {}
    epochs = (doctor.get("before") or {}).get("epochs")
    budget = f" ({epochs} epochs each, the same seed)" if epochs else ""
    parts = [
        f"<h2>Repairs tried{e(budget)}</h2><table id='trials'><tr><th>repair</th>"
        "<th>change</th><th>val accuracy (before → after)</th>"
        "<th>val loss (before → after)</th><th>findings left</th></tr>"
    ]
    for t in doctor["trials"]:
        name = str(t.get("repair"))
        mark = " (kept)" if name == doctor.get("chosen") else ""
        change = "<br>".join(f"<code>{e(c)}</code>" for c in _changes(t.get("patch"), settings))
        parts.append(
            f"<tr><td>{e(name + mark)}</td><td>{change or '-'}</td>"
            f"<td class='n'>{e(metric_change(base.get('val_accuracy'), t.get('val_accuracy'), accuracy=True))}</td>"
            f"<td class='n'>{e(metric_change(base.get('val_loss'), t.get('val_loss'), accuracy=False))}</td>"
            f"<td>{e(', '.join(t.get('findings') or []) or 'none')}</td></tr>"
        )
    parts.append("</table>")
    return parts


def render_report(
    health: Health,
    findings: list[Finding],
    doctor: dict | None = None,
    title: str = "trainwell health report",
    settings: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML string (plots embedded as PNG data URIs).

    At the top the summary: the primary finding, the status and the kept repair as exact
    changes (``optim.lr: 10 → 0.05``) with the patch in TOML, and the final metrics (before,
    after, yardstick; without a doctor run, the last epoch's). Then the findings with their
    evidence in sentences, the repairs tried with their changes and before → after metrics,
    and the plots at full width.

    Args:
        health: the run's health record.
        findings: the findings to list with their evidence and repairs.
        doctor: the doctor's result dict (``doctor.json``: ``trials``, ``chosen``, ``patch``,
            ``before``, ``after``, ``yardstick``, ``status``) if a repair ran.
        title: page title.
        settings: the run's config as nested dicts (the values before a patch); None shows
            only the new values.

    Returns:
        A complete HTML document.
    """
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    parts += _summary(health, findings, doctor, settings)
    parts += _findings(findings)
    if doctor and doctor.get("trials"):
        parts += _trials(doctor, settings)
    for caption, uri in _plots(health):
        parts.append(f"<h2>{e(caption)}</h2><img alt='{e(caption)}' src='{uri}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    run_dir: str | Path, *, health: Health | None = None, findings: list[Finding] | None = None
) -> Path:
    """Write ``run_dir/report.html`` from the run's ``health.jsonl`` (or the given health).

    ``doctor.json`` in ``run_dir`` (the doctor's result) adds the status, the final metrics and
    the repairs tried; ``config.toml`` (or ``diagnostic/config.toml``, the config the doctor
    was given) supplies the values each repair changed.

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
    title = f"trainwell health report: {run_dir.name}"
    text = render_report(health, findings, doctor, title=title, settings=_settings_of(run_dir))
    path = run_dir / "report.html"
    atomic_write_text(path, text)
    return path
