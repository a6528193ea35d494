"""Bar charts on log axes as SVG text, for the run's report.

A report is written at the end of every run, so its charts must cost milliseconds: drawing them
with matplotlib took about 2 s of a run (1.3 s to import it and its PNG machinery, 0.6 s to draw),
more than many small jobs spend on their data. These charts are a few hundred lines of SVG each,
embedded as images, so the page reads the same offline and in print.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from collections.abc import Callable, Sequence

FONT = "font-family=\"Helvetica, Arial, sans-serif\""
GRID, INK, MUTED = "#e3e3e3", "#222", "#555"
#: Average width of a character of the 11 px labels, for laying out margins.
CHAR_PX = 6.4


@dataclasses.dataclass
class Series:
    label: str
    values: Sequence[float]
    color: str
    #: Text written at the end of each bar (None: nothing; an empty string skips that bar).
    notes: Sequence[str] | None = None
    note_color: str = INK
    #: A color per bar, where the bars of one series mean different things (then pass a legend).
    colors: Sequence[str] | None = None

    def color_of(self, i: int) -> str:
        return self.colors[i] if self.colors is not None else self.color


def count(v: float) -> str:
    return f"{v:,.0f}"


class _LogScale:
    """Position along an axis of length ``size`` for values from 0.5 to ``top`` x 4, logarithmic."""

    def __init__(self, values: Sequence[float], size: float, headroom: float = 4.0):
        self.top = max([v for v in values if v > 0] or [1]) * headroom
        self.lo, self.hi, self.size = math.log10(0.5), math.log10(self.top), size

    def __call__(self, v: float) -> float:
        return (math.log10(max(v, 0.5)) - self.lo) / (self.hi - self.lo) * self.size

    def ticks(self) -> list[float]:
        return [10.0 ** k for k in range(int(math.log10(self.top)) + 1)]


def _text(x: float, y: float, s: str, size: int = 11, anchor: str = "start", color: str = INK,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" {FONT}'
            f'{" " + extra if extra else ""}>{html.escape(s)}</text>')


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for label, color in entries:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>')
        parts.append(_text(x + 14, y, label, 10))
        x += 24 + CHAR_PX * len(label)
    return "".join(parts)


def _svg(width: float, height: float, body: list[str], alt: str) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}"><title>{html.escape(alt)}</title>'
           f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>')
    return base64.b64encode(svg.encode()).decode()


def hbars(categories: Sequence[str], series: Sequence[Series], title: str, xlabel: str,
          tick: Callable[[float], str] = count, width: float = 620, headroom: float = 4.0,
          legend: Sequence[tuple[str, str]] | None = None) -> str:
    """Horizontal bars, one row per category (top to bottom), one bar per series in each row, on a
    log x axis; returns the SVG, base64-encoded. The legend names the series unless given."""
    left = 12 + CHAR_PX * max([len(c) for c in categories] or [4])
    top, row = 46, 8 + 11 * len(series)
    plot_w = max(width - left - 70, 120)
    scale = _LogScale([v for s in series for v in s.values], plot_w, headroom)
    height = top + row * len(categories) + 42
    entries = legend if legend is not None else [(s.label, s.color) for s in series]
    body = [_text(4, 16, title, 13, extra='font-weight="bold"'), _legend(entries, left, 34)]
    for t in scale.ticks():
        x = left + scale(t)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + row * len(categories)}" '
                    f'stroke="{GRID}"/>')
        body.append(_text(x, top + row * len(categories) + 14, tick(t), 9, "middle", MUTED))
    body.append(_text(left + plot_w / 2, height - 6, xlabel, 10, "middle", MUTED))
    bar = (row - 8) / max(len(series), 1)
    for i, name in enumerate(categories):
        y0 = top + row * i + 4
        body.append(_text(left - 6, y0 + (row - 8) / 2 + 4, name, 11, "end"))
        for k, s in enumerate(series):
            v, y = s.values[i], y0 + k * bar
            if v > 0:
                body.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(scale(v), 1):.1f}" '
                            f'height="{bar - 1:.1f}" fill="{s.color_of(i)}"/>')
            if s.notes is not None and s.notes[i]:
                body.append(_text(left + scale(v) + 4, y + bar - 2, s.notes[i], 9, color=s.note_color))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + row * len(categories)}" stroke="{MUTED}"/>')
    return _svg(width, height, body, title)


def vbars(categories: Sequence[str], series: Sequence[Series], title: str, xlabel: str, ylabel: str,
          width: float = 760, height: float = 260, min_slots: int = 1) -> str:
    """Vertical bars, one slot per category (left to right), one bar per series in each, on a log
    y axis; returns the SVG, base64-encoded."""
    tilt = len(categories) > 10
    left, top, bottom = 58, 40, 62 if tilt else 44
    plot_w, plot_h = width - left - 16, height - top - bottom
    scale = _LogScale([v for s in series for v in s.values], plot_h)
    slot = plot_w / max(len(categories), min_slots)
    bar = slot * 0.8 / max(len(series), 1)
    body = [_text(4, 16, title, 13, extra='font-weight="bold"'),
            _legend([(s.label, s.color) for s in series], left + 8, 32) if len(series) > 1 else ""]
    for t in scale.ticks():
        y = top + plot_h - scale(t)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 3, count(t), 9, "end", MUTED))
    for i, name in enumerate(categories):
        x0 = left + slot * i + slot * 0.1
        for k, s in enumerate(series):
            v, x = s.values[i], x0 + k * bar
            h = scale(v) if v > 0 else 0
            if h:
                body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1:.1f}" '
                            f'height="{h:.1f}" fill="{s.color_of(i)}"/>')
            if s.notes is not None and s.notes[i]:
                body.append(_text(x + bar / 2, top + plot_h - h - 3, s.notes[i], 9, "middle", s.note_color))
        cx, cy = left + slot * (i + 0.5), top + plot_h + 13
        body.append(_text(cx, cy, name, 9, "end" if tilt else "middle", MUTED,
                          f'transform="rotate(-50 {cx:.1f} {cy:.1f})"' if tilt else ""))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    body.append(_text(left + plot_w / 2, height - 6, xlabel, 10, "middle", MUTED))
    body.append(_text(12, top + plot_h / 2, ylabel, 10, "middle", MUTED,
                      f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"'))
    return _svg(width, height, body, title)
