"""The health report: one self-contained ``report.html`` a person reads, with SVG plots.

From the top: the summary (primary finding, status, the kept repair as exact config changes
and its patch as TOML, the final metrics before/after/yardstick), the findings with their
evidence in sentences (:mod:`.wording`), the repairs tried (``doctor.json`` when the doctor
wrote one) each with its change and before → after metrics, then the plots (inline SVG
drawn by :mod:`.svgplot`, full page width, text ≥ 13 px, legends and labelled layers, so the
file works offline and alone, and writing it takes milliseconds, not matplotlib's second):
loss and accuracy curves, a layers ×
steps heat map of log10 gradient norms, dead and saturated shares per layer, activation
histograms at the first and last probe, the learning rate per epoch.
"""

from __future__ import annotations

import html
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..train.checkpoint import atomic_write_text
from . import svgplot as svg
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

__all__ = ["render_report", "verification_cut", "write_report"]


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def _text_px(s: str) -> float:
    """Rough width of ``s`` at the tick font size (13 px sans-serif)."""
    return 7.4 * len(s)


def _plots(health: Health) -> list[tuple[str, str]]:
    """The report's charts as (caption, inline SVG) pairs (see :mod:`.svgplot`)."""
    out = [("Loss and accuracy", _curves(health))]
    names = health.layer_names
    if names and health.probes:
        out.append(("Gradient norms per layer (log10)", _heat_map(health, names)))
        out.append(("Dead and saturated units per layer", _unit_bars(health, names)))
        out.append(("Activation histograms", _histograms(health, names)))
    lrs = [(i + 1, e["lr"]) for i, e in enumerate(health.epochs) if _ok(e.get("lr"))]
    if lrs:
        out.append(("Learning rate", _lr(lrs)))
    return out


def _below(ax: svg.Axes, columns: int = 1) -> tuple[float, float, int]:
    return ax.x, ax.y + ax.h + 52, columns


def _curves(health: Health) -> str:
    ep = health.epochs
    chart = svg.Chart(470, "Loss and accuracy")
    a1 = chart.add(80, 40, 420, 290)
    a2 = chart.add(640, 40, 420, 290)
    steps = [(i, v) for i, v in enumerate(health.losses) if _ok(v)]
    per = max(1, len(health.losses) // max(1, len(ep))) if ep else 1
    series: list[tuple[list[float], list[float], str, bool, float, float]] = []
    if steps:
        series.append(([float(s) for s, _ in steps], [v for _, v in steps],
                       "training loss per step", False, 0.45, 1.0))
    for key, label in (("train_loss", "training loss (epoch mean)"),
                       ("val_loss", "validation loss")):
        pts = [((i + 1) * per, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            series.append(([p[0] for p in pts], [p[1] for p in pts], label, True, 1.0, 2.0))
    values = [v for _, v in steps]
    wide = bool(values) and min(values) > 0 and max(values) / min(values) > 10
    xs = [x for s in series for x in s[0]] or [0.0, 1.0]
    ys = [y for s in series for y in s[1]] or [0.0, 1.0]
    a1.limits(xs, ys, ylog=wide)  # a log axis only where the loss spans decades
    a1.xint = True  # steps are whole numbers
    for k, (x, y, label, markers, opacity, width) in enumerate(series):
        a1.line(x, y, svg.COLOURS[k], label, markers=markers, opacity=opacity, width=width)
    a1.title, a1.xlabel, a1.ylabel = "Loss", "optimizer step", "loss"
    a1.legend_at = _below
    acc = []
    for key, label in (("train_accuracy", "training accuracy"),
                       ("val_accuracy", "validation accuracy")):
        pts = [(i + 1, e[key]) for i, e in enumerate(ep) if _ok(e.get(key))]
        if pts:
            acc.append(([float(p[0]) for p in pts], [p[1] for p in pts], label))
    a2.limits([x for s in acc for x in s[0]] or [1.0],
              [y for s in acc for y in s[1]] or [0.0, 1.0])
    a2.xint = True
    for k, (x, y, label) in enumerate(acc):
        a2.line(x, y, svg.COLOURS[k], label, markers=True, width=2.0)
    a2.title, a2.xlabel, a2.ylabel = "Accuracy", "epoch", "accuracy"
    if not acc:  # a regression run has no accuracy curves
        a2.parts.append(f"<text x='{a2.x + a2.w / 2}' y='{a2.y + a2.h / 2}' "
                        "text-anchor='middle' font-size='14'>no accuracy (regression)</text>")
    a2.legend_at = _below
    return chart.render()


def _category_axis(ax: svg.Axes, names: list[str], x_range: tuple[float, float]) -> None:
    """Layers as rows from the top (input side first), x over ``x_range``."""
    ax.xlim = x_range
    ax.ylim = (len(names) - 0.5, -0.5)  # row 0 at the top
    ax.yticklabels = [(float(i), n) for i, n in enumerate(names)]


def _heat_map(health: Health, names: list[str]) -> str:
    probes = health.probes
    grid: list[list[float | None]] = []
    for n in names:
        row: list[float | None] = []
        for rec in probes:
            g = rec.get("layers", {}).get(n, {}).get("grad_norm")
            row.append(math.log10(max(g, 1e-300)) if _ok(g) else None)
        grid.append(row)
    finite = [v for row in grid for v in row if v is not None]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    left = 40 + max(_text_px(n) for n in names) + 40
    # rows of ~26 px; a few layers get taller rows, so the rotated axis labels fit
    height = max(26 * len(names), 290)
    chart = svg.Chart(height + 110, "Gradient norms per layer (log10)")
    ax = chart.add(left, 20, 960 - left, height)
    _category_axis(ax, names, (-0.5, len(probes) - 0.5))
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            colour = "#dddddd" if v is None else svg.viridis((v - lo) / (hi - lo))
            tip = (f"{names[i]}, step {probes[j]['step']}: "
                   + ("no value" if v is None else f"log10 ‖∂J/∂W‖ = {v:.2f}"))
            ax.rect(j - 0.5, i - 0.5, j + 0.5, i + 0.5, colour, tip)
    stride = max(1, len(probes) // 10)
    ax.xticklabels = [(float(t), str(probes[t]["step"])) for t in range(0, len(probes), stride)]
    ax.xlabel, ax.ylabel = "optimizer step (probe)", "layer (input side at the top)"
    ax.ylabel_gap = left - 22
    # the colour bar, with its own ticks and label
    cb = chart.add(985, 20, 22, height)
    cb.xlim, cb.ylim = (0.0, 1.0), (lo, hi)
    cb.yticklabels, cb.xticklabels = [], []
    bands = 48
    for k in range(bands):
        a, b = lo + (hi - lo) * k / bands, lo + (hi - lo) * (k + 1) / bands
        cb.rect(0, a, 1, b, svg.viridis((k + 0.5) / bands))
    for t in svg.nice_ticks(lo, hi, 5):
        if lo <= t <= hi:
            p = cb.py(t)
            chart.extra.append(f"<line x1='1007' y1='{p:.1f}' x2='1012' y2='{p:.1f}' "
                               f"stroke='#444'/><text x='1015' y='{p + 4.5:.1f}' "
                               f"font-size='13'>{svg.nice_label(t)}</text>")
    cy = 20 + height / 2
    chart.extra.append(f"<text x='1075' y='{cy:.1f}' text-anchor='middle' font-size='14' "
                       f"transform='rotate(-90 1075 {cy:.1f})'>log10 of the gradient norm "
                       "‖∂J/∂W‖</text>")
    return chart.render()


def _unit_bars(health: Health, names: list[str]) -> str:
    left = 40 + max(_text_px(n) for n in names) + 40
    height = max(30 * len(names), 100)
    chart = svg.Chart(height + 130, "Dead and saturated units per layer")
    ax = chart.add(left, 20, 1060 - left, height)
    _category_axis(ax, names, (0.0, 1.0))
    for k, (key, label) in enumerate(
        (("dead_share", "dead units (0 on every probe sample)"),
         ("saturated_share", "saturated outputs (|z| ≥ 5)"))
    ):
        colour = svg.COLOURS[k]
        for i, n in enumerate(names):
            v = _median([v for _, v in health.series(n, key)])
            top = i - 0.4 + 0.4 * k
            ax.rect(0, top, min(max(v, 0.0), 1.0), top + 0.4, colour, f"{n}: {label} {v:.0%}")
        ax.legend.append((label, colour, "box"))
    ax.xlabel, ax.ylabel = "median share over the probes", "layer"
    ax.ylabel_gap = left - 22
    ax.legend_at = lambda a: (a.x, a.y + a.h + 52, 2)
    return chart.render()


def _histograms(health: Health, names: list[str]) -> str:
    colours = [svg.viridis(0.9 * i / max(1, len(names) - 1)) for i in range(len(names))]
    ncol = min(len(names), 6)
    rows = math.ceil(len(names) / ncol)
    chart = svg.Chart(430 + 20 * rows, "Activation histograms")
    panels = []
    curves = []
    for ax_x, rec, title in ((80, health.probes[0], "first probe"),
                             (600, health.probes[-1], "last probe")):
        ax = chart.add(ax_x, 40, 460, 300)
        ax.title = f"{title} (step {rec['step']})"
        ax.xlabel = "activation value (after the layer's activation)"
        drawn = []
        for n, colour in zip(names, colours, strict=True):
            st = rec.get("layers", {}).get(n, {})
            if "hist" in st and st["hist"]:
                lo, hi = st["hist_range"]
                counts = list(st["hist"])
                total = max(1, sum(counts))
                k = len(counts)
                edges = [lo + (hi - lo) * i / k for i in range(k + 1)]
                xs, ys = [edges[0]], [0.0]
                for i, c in enumerate(counts):
                    xs += [edges[i], edges[i + 1]]
                    ys += [c / total, c / total]
                xs.append(edges[-1])
                ys.append(0.0)
                drawn.append((xs, ys, n, colour))
        panels.append(ax)
        curves.append(drawn)
    ys_all = [y for drawn in curves for c in drawn for y in c[1]] or [0.0, 1.0]
    for ax, drawn in zip(panels, curves, strict=True):
        ax.limits([x for c in drawn for x in c[0]] or [0.0, 1.0], ys_all)
        ax.ylim = (0.0, ax.ylim[1])  # shared y from 0
        for xs, ys, n, colour in drawn:
            ax.line(xs, ys, colour, n, width=1.4)
    panels[0].ylabel = "share of the layer's outputs"
    items = [(n, c, "line") for n, c in zip(names, colours, strict=True)]
    if any(curves):
        width = 150 * ncol + 8
        chart.extra.append(svg.legend(items, 550 - width / 2, 395, ncol,
                                      title="layer (input side first)", col_width=150))
    return chart.render()


def _lr(lrs: list[tuple[int, float]]) -> str:
    chart = svg.Chart(330, "Learning rate")
    ax = chart.add(90, 20, 980, 200)
    values = [v for _, v in lrs]
    ax.limits([e for e, _ in lrs], values,
              ylog=min(values) > 0 and max(values) / min(values) > 20)
    ax.xint = True
    ax.line([e for e, _ in lrs], values, svg.COLOURS[0], "learning rate at the epoch's end",
            markers=True, width=2.0)
    ax.xlabel, ax.ylabel = "epoch", "learning rate"
    ax.ylabel_gap = 75
    ax.legend_at = _below
    return chart.render()


_CSS = (
    "body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 12px;font-size:15px;"
    "line-height:1.4}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;"
    "text-align:left}table{border-collapse:collapse;margin:8px 0}svg.plot{width:100%;height:auto;"
    "display:block}figure{margin:0}"
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
        cut = verification_cut(doctor)
        if cut:
            parts.append(f"<p id='verified'>{e(cut)}</p>")
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


def verification_cut(doctor: Mapping[str, Any], folder: str = "final") -> str | None:
    """The sentence saying the kept repair was verified over fewer epochs than the run has
    (the doctor's time budget stopped its continuation) and how to finish it (``folder``: the
    doctor's ``final/`` run folder), or None."""
    verified, full = doctor.get("verified_epochs"), doctor.get("full_epochs")
    if not doctor.get("budget_stopped") or not isinstance(verified, int) or not isinstance(full, int):
        return None
    said = (f"The repaired run was verified to epoch {verified} of {full}, where the doctor's "
            "time budget (about 1.5 runs of the config, the short look, yardstick and trials "
            "included) ended; ")
    if doctor.get("resumable"):
        return said + (f"`trainwell train --resume {folder}` trains epochs {verified + 1}–{full} "
                       "of that very run (the run `trainwell train repaired.toml` gives).")
    return said + f"`trainwell train repaired.toml` trains all {full}."


def render_report(
    health: Health,
    findings: list[Finding],
    doctor: dict | None = None,
    title: str = "trainwell health report",
    settings: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML string (plots as inline SVG).

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
    for caption, chart in _plots(health):
        parts.append(f"<h2>{e(caption)}</h2><figure>{chart}</figure>")
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
