"""Small hand-written SVG charts for ``report.html``: line plots, a heat map, bars, stairs.

matplotlib took about a second per report (its import, then constrained layout and PNG
encoding of five figures: 3–7 s on a busy 2-core machine), a large share of a doctor call
on a run of a few seconds. These charts are plain SVG text: no import, a few milliseconds,
sharp at any zoom. Every chart is ``WIDTH`` px wide in its own coordinates and scales to
the page's width (``width:100%`` in the report's CSS); text is 13–15 px, axes are labelled,
ticks are "nice" numbers, and every series has a legend entry.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

__all__ = ["COLOURS", "Axes", "Chart", "legend", "nice_label", "nice_ticks", "svg_document",
           "viridis"]

WIDTH = 1100  # px in the chart's own coordinates (the page is ~1150 px wide)
TICK = 13  # px: tick labels and legends
LABEL = 14  # px: axis labels
TITLE = 15  # px: panel titles
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962",
            "#addc30", "#fde725")


def viridis(t: float) -> str:
    """The viridis colour at ``t`` in [0, 1] (linear between nine anchors)."""
    t = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    rgb = [round(int(a[k:k + 2], 16) * (1 - f) + int(b[k:k + 2], 16) * f) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def nice_label(v: float) -> str:
    """A tick value as short text (``0.25``, ``1e-4``)."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        m, e = f"{v:.0e}".split("e")
        return f"{m}e{int(e)}"
    return f"{v:.6g}"


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


class Axes:
    """One panel: a pixel box, data ranges (linear or log10), and the SVG drawn into it."""

    def __init__(self, x: float, y: float, w: float, h: float) -> None:
        self.x, self.y, self.w, self.h = x, y, w, h
        self.xlim = (0.0, 1.0)
        self.ylim = (0.0, 1.0)
        self.xlog = self.ylog = False
        self.xint = False  # integer ticks only on x (epochs, probe indices)
        self.parts: list[str] = []
        self.legend: list[tuple[str, str, str]] = []  # (label, colour, kind: line/box)
        self.title = self.xlabel = self.ylabel = ""
        self.yticklabels: list[tuple[float, str]] | None = None
        self.xticklabels: list[tuple[float, str]] | None = None

    def limits(self, xs: Sequence[float], ys: Sequence[float], *, xlog: bool = False,
               ylog: bool = False, pad: float = 0.05) -> None:
        """Set the ranges from the data (a margin of ``pad`` of the span on each side)."""
        self.xlog, self.ylog = xlog, ylog
        self.xlim = self._range(xs, xlog, 0.02)
        self.ylim = self._range(ys, ylog, pad)

    @staticmethod
    def _range(vs: Sequence[float], log: bool, pad: float) -> tuple[float, float]:
        vals = [math.log10(v) if log else v for v in vs
                if math.isfinite(v) and (v > 0 or not log)]
        if not vals:
            return (0.0, 1.0)
        lo, hi = min(vals), max(vals)
        if hi == lo:
            d = abs(lo) * 0.1 or 1.0
            return (lo - d, hi + d)
        d = (hi - lo) * pad
        return (lo - d, hi + d)

    def px(self, v: float) -> float:
        v = math.log10(max(v, 1e-300)) if self.xlog else v
        lo, hi = self.xlim
        return self.x + (v - lo) / (hi - lo) * self.w

    def py(self, v: float) -> float:
        v = math.log10(max(v, 1e-300)) if self.ylog else v
        lo, hi = self.ylim
        return self.y + self.h - (v - lo) / (hi - lo) * self.h

    # ---- artists ----------------------------------------------------------------------
    def line(self, xs: Sequence[float], ys: Sequence[float], colour: str, label: str = "", *,
             width: float = 1.6, markers: bool = False, opacity: float = 1.0) -> None:
        pts = [(self.px(a), self.py(b)) for a, b in zip(xs, ys, strict=True)
               if math.isfinite(a) and math.isfinite(b)]
        if not pts:
            return
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        self.parts.append(f"<polyline points='{path}' fill='none' stroke='{colour}' "
                          f"stroke-width='{width}' stroke-opacity='{opacity}'/>")
        if markers:
            self.parts.append("".join(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3.2' "
                                      f"fill='{colour}'/>" for a, b in pts))
        if label:
            self.legend.append((label, colour, "line"))

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: str,
             tip: str = "") -> None:
        """A data-space rectangle (pixel corners rounded outward so cells meet)."""
        a, b = sorted((self.px(x0), self.px(x1)))
        c, d = sorted((self.py(y0), self.py(y1)))
        title = f"<title>{_esc(tip)}</title>" if tip else ""
        self.parts.append(f"<rect x='{a:.1f}' y='{c:.1f}' width='{max(b - a, 0.5):.1f}' "
                          f"height='{max(d - c, 0.5):.1f}' fill='{colour}' stroke='{colour}' "
                          f"stroke-width='0.6'>{title}</rect>")

    # ---- frame ------------------------------------------------------------------------
    def _ticks(self, lim: tuple[float, float], log: bool) -> list[tuple[float, str]]:
        lo, hi = lim
        if log:
            decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
            if len(decades) >= 2:
                step = max(1, math.ceil(len(decades) / 8))
                return [(10.0 ** d, nice_label(10.0 ** d)) for d in decades[::step]]
            return [(10.0 ** t, nice_label(10.0 ** t)) for t in nice_ticks(lo, hi, 4)]
        return [(t, nice_label(t)) for t in nice_ticks(lo, hi) if lo - 1e-12 <= t <= hi + 1e-12]

    def render(self) -> str:
        x, y, w, h = self.x, self.y, self.w, self.h
        out = [f"<rect x='{x}' y='{y}' width='{w}' height='{h}' fill='white' stroke='#444'/>"]
        xt = self.xticklabels if self.xticklabels is not None else self._ticks(self.xlim,
                                                                               self.xlog)
        if self.xint and self.xticklabels is None:
            xt = [(v, t) for v, t in xt if float(v).is_integer()] or [
                (float(round(sum(self.xlim) / 2)), nice_label(round(sum(self.xlim) / 2)))]
        yt = self.yticklabels if self.yticklabels is not None else self._ticks(self.ylim,
                                                                               self.ylog)
        grid = self.yticklabels is None  # category axes (layers) get no grid lines
        for v, text in xt:
            p = self.px(v)
            if not x - 0.5 <= p <= x + w + 0.5:
                continue
            if grid:
                out.append(f"<line x1='{p:.1f}' y1='{y}' x2='{p:.1f}' y2='{y + h}' "
                           "stroke='#000' stroke-opacity='0.1'/>")
            out.append(f"<line x1='{p:.1f}' y1='{y + h}' x2='{p:.1f}' y2='{y + h + 5}' "
                       "stroke='#444'/>")
            out.append(f"<text x='{p:.1f}' y='{y + h + 19}' text-anchor='middle' "
                       f"font-size='{TICK}'>{_esc(text)}</text>")
        for v, text in yt:
            p = self.py(v)
            if not y - 0.5 <= p <= y + h + 0.5:
                continue
            if grid:
                out.append(f"<line x1='{x}' y1='{p:.1f}' x2='{x + w}' y2='{p:.1f}' "
                           "stroke='#000' stroke-opacity='0.1'/>")
            out.append(f"<line x1='{x - 5}' y1='{p:.1f}' x2='{x}' y2='{p:.1f}' stroke='#444'/>")
            out.append(f"<text x='{x - 8}' y='{p + 4.5:.1f}' text-anchor='end' "
                       f"font-size='{TICK}'>{_esc(text)}</text>")
        out.append("<g>" + "".join(self.parts) + "</g>")
        out.append(f"<rect x='{x}' y='{y}' width='{w}' height='{h}' fill='none' stroke='#444'/>")
        if self.title:
            out.append(f"<text x='{x + w / 2:.1f}' y='{y - 10}' text-anchor='middle' "
                       f"font-size='{TITLE}' font-weight='bold'>{_esc(self.title)}</text>")
        if self.xlabel:
            out.append(f"<text x='{x + w / 2:.1f}' y='{y + h + 40}' text-anchor='middle' "
                       f"font-size='{LABEL}'>{_esc(self.xlabel)}</text>")
        if self.ylabel:
            cx, cy = x - self.ylabel_gap, y + h / 2
            out.append(f"<text x='{cx:.1f}' y='{cy:.1f}' text-anchor='middle' "
                       f"font-size='{LABEL}' transform='rotate(-90 {cx:.1f} {cy:.1f})'>"
                       f"{_esc(self.ylabel)}</text>")
        if self.legend and self.legend_at is not None:
            out.append(legend(self.legend, *self.legend_at(self)))
        return "".join(out)

    ylabel_gap = 58.0
    # set per panel: where its legend goes, (axes) -> (x, y, columns); None: no legend
    legend_at: Callable[[Axes], tuple[float, float, int]] | None = None


def legend(items: Sequence[tuple[str, str, str]], x: float, y: float, columns: int = 1,
           title: str = "", col_width: float = 0.0) -> str:
    """A boxed legend with its top-left corner at (x, y)."""
    rows = math.ceil(len(items) / columns)
    longest = max(len(label) for label, _, _ in items)
    cw = col_width or (34 + 7.2 * longest)
    top = 20 if title else 0
    width = cw * min(columns, len(items)) + 8
    height = top + 20 * rows + 8
    out = [f"<g><rect x='{x:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height}' "
           "fill='white' fill-opacity='0.85' stroke='#bbb' rx='3'/>"]
    if title:
        out.append(f"<text x='{x + 8:.1f}' y='{y + 16:.1f}' font-size='{TICK}' "
                   f"font-weight='bold'>{_esc(title)}</text>")
    for k, (label, colour, kind) in enumerate(items):
        cx = x + 8 + (k % columns) * cw
        cy = y + top + 14 + (k // columns) * 20
        if kind == "box":
            out.append(f"<rect x='{cx:.1f}' y='{cy - 9:.1f}' width='20' height='11' "
                       f"fill='{colour}'/>")
        else:
            out.append(f"<line x1='{cx:.1f}' y1='{cy - 4:.1f}' x2='{cx + 20:.1f}' "
                       f"y2='{cy - 4:.1f}' stroke='{colour}' stroke-width='2.5'/>")
        out.append(f"<text x='{cx + 26:.1f}' y='{cy:.1f}' font-size='{TICK}'>"
                   f"{_esc(label)}</text>")
    out.append("</g>")
    return "".join(out)


class Chart:
    """An SVG of ``WIDTH`` × ``height`` px holding panels and loose elements."""

    def __init__(self, height: float, caption: str) -> None:
        self.height = height
        self.caption = caption
        self.axes: list[Axes] = []
        self.extra: list[str] = []

    def add(self, x: float, y: float, w: float, h: float) -> Axes:
        ax = Axes(x, y, w, h)
        self.axes.append(ax)
        return ax

    def render(self) -> str:
        body = "".join(ax.render() for ax in self.axes) + "".join(self.extra)
        return svg_document(body, self.height, self.caption)


def svg_document(body: str, height: float, caption: str) -> str:
    """An inline ``<svg>`` scaling to the page's width (its viewBox keeps the proportions)."""
    return (f"<svg class='plot' viewBox='0 0 {WIDTH} {height:.0f}' role='img' "
            f"aria-label='{_esc(caption)}' font-family='sans-serif' "
            f"preserveAspectRatio='xMidYMid meet'><title>{_esc(caption)}</title>"
            f"<rect width='{WIDTH}' height='{height:.0f}' fill='white'/>{body}</svg>")
