"""Inline SVG charts: stacked horizontal memory bars against a GPU's capacity, and a scatter of serving points
(tokens/s per GPU against tokens/s per user) with its frontier.

The charts draw the figures they are given and compute none: sizes are bytes (shown in GiB as the tables show
them, ``units.gib_text``), speeds are the speed model's. Each mark carries a ``<title>`` (its figure on hover);
the SVG scales with the page (``viewBox``) and prints as vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from shardsim.render.html.document import Raw, esc
from shardsim.render.html.style import TERM_COLORS
from shardsim.units import gib_text

WIDTH = 1000
ROW, BAR = 28, 16


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its terms in drawing order as (name, bytes), the GPU's capacity (the outline), an
    optional budget line (vLLM's fraction of the capacity) and the text at its right."""

    label: str
    segments: tuple[tuple[str, int], ...]
    capacity: int
    budget: int | None = None
    note: str = ""


def _legend(names: Sequence[str], y: int, x0: int) -> str:
    out, x = [], x0
    for name in names:
        color = TERM_COLORS.get(name, "#888888")
        if name == "budget":
            out.append(f'<line x1="{x}" y1="{y - 10}" x2="{x}" y2="{y + 2}" stroke="{color}" stroke-width="2" '
                       'stroke-dasharray="3,2"/>')
        else:
            out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{color}" stroke="#555"/>')
        out.append(f'<text x="{x + 17}" y="{y}" font-size="12">{esc(name)}</text>')
        x += 30 + 7 * len(name)
    return "".join(out)


def stacked_bars(bars: Sequence[Bar], legend: Sequence[str]) -> Raw:
    """One stacked bar per row on a shared scale (the largest capacity or total): each term a coloured segment,
    the capacity a dark outline, the budget (when given) a dashed red line; a bar past its capacity shows it."""
    if not bars:
        return Raw("")
    label_w = min(360, 20 + 8 * max(len(b.label) for b in bars))
    note_w = min(260, 20 + 7 * max(len(b.note) for b in bars))
    x0, x1 = label_w, WIDTH - note_w
    top = 26
    height = top + ROW * len(bars) + 8
    scale_max = max(max(b.capacity, sum(v for _, v in b.segments)) for b in bars) or 1
    px = lambda n: (x1 - x0) * n / scale_max  # noqa: E731
    out = [f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" role="img">', _legend(legend, 14, x0)]
    for i, b in enumerate(bars):
        y = top + i * ROW
        out.append(f'<text x="{x0 - 8}" y="{y + BAR - 3}" font-size="12" text-anchor="end">{esc(b.label)}</text>')
        x = float(x0)
        for name, value in b.segments:
            if value <= 0:
                continue
            w = px(value)
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" fill="{TERM_COLORS.get(name, "#888")}">'
                       f"<title>{esc(name)}: {gib_text(value)} GiB</title></rect>")
            x += w
        out.append(f'<rect x="{x0}" y="{y - 1}" width="{px(b.capacity):.1f}" height="{BAR + 2}" fill="none" '
                   f'stroke="#1d232b" stroke-width="1.2"><title>capacity {gib_text(b.capacity)} GiB</title></rect>')
        if b.budget is not None:
            bx = x0 + px(b.budget)
            out.append(f'<line x1="{bx:.1f}" y1="{y - 4}" x2="{bx:.1f}" y2="{y + BAR + 4}" '
                       f'stroke="{TERM_COLORS["budget"]}" stroke-width="2" stroke-dasharray="3,2">'
                       f"<title>budget {gib_text(b.budget)} GiB</title></line>")
        out.append(f'<text x="{x1 + 8}" y="{y + BAR - 3}" font-size="12">{esc(b.note)}</text>')
    out.append("</svg>")
    return Raw("".join(out))


@dataclass(frozen=True)
class Point:
    """One serving point: tokens/s per user (x), tokens/s per GPU (y), its label and whether it meets the targets."""

    x: float
    y: float
    label: str
    meets: bool = True
    detail: str = ""


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``high`` (steps of 1, 2 or 5 × 10^k)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [step * i for i in range(int(math.ceil(high / step)) + 1)]


def frontier(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both axes, by tokens/s per user."""
    front = [p for p in points if not any(q.x >= p.x and q.y >= p.y and (q.x > p.x or q.y > p.y) for q in points)]
    return sorted(front, key=lambda p: p.x)


def scatter(points: Sequence[Point], x_label: str, y_label: str) -> Raw:
    """The points on linear axes from 0; the frontier joined by a line and numbered 1, 2 … by tokens/s per user
    (``frontier``: the caller lists them), the others as marks with their label on hover; a point that misses a
    target is hollow."""
    pts = [p for p in points if p.x is not None and p.y is not None]
    if not pts:
        return Raw("")
    w, h, left, bottom, pad = WIDTH, 420, 78, 50, 20
    xt, yt = nice_ticks(max(p.x for p in pts)), nice_ticks(max(p.y for p in pts))
    sx = lambda v: left + (w - left - pad) * v / xt[-1]  # noqa: E731
    sy = lambda v: h - bottom - (h - bottom - pad) * v / yt[-1]  # noqa: E731
    out = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">']
    for t in xt:
        out.append(f'<line x1="{sx(t):.1f}" y1="{pad}" x2="{sx(t):.1f}" y2="{h - bottom}" stroke="#e3e6ea"/>'
                   f'<text x="{sx(t):.1f}" y="{h - bottom + 16}" font-size="11" text-anchor="middle">{t:,.6g}</text>')
    for t in yt:
        out.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{w - pad}" y2="{sy(t):.1f}" stroke="#e3e6ea"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{t:,.6g}</text>')
    out.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - pad}" y2="{h - bottom}" stroke="#1d232b"/>'
               f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{h - bottom}" stroke="#1d232b"/>'
               f'<text x="{(left + w - pad) / 2}" y="{h - 10}" font-size="13" text-anchor="middle">{esc(x_label)}</text>'
               f'<text x="16" y="{(pad + h - bottom) / 2}" font-size="13" text-anchor="middle" '
               f'transform="rotate(-90 16 {(pad + h - bottom) / 2})">{esc(y_label)}</text>')
    front = frontier(pts)
    if len(front) > 1:
        path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#2f5d8a" stroke-width="2"/>')
    for p in pts:
        fill = "#2f5d8a" if p.meets else "#ffffff"
        out.append(f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="5" fill="{fill}" stroke="#2f5d8a" '
                   f'stroke-width="1.5"><title>{esc(p.label)}: {p.x:,.1f} tok/s per user, {p.y:,.1f} tok/s per GPU'
                   f'{esc(" · " + p.detail) if p.detail else ""}</title></circle>')
    for i, p in enumerate(front, 1):
        out.append(f'<text x="{sx(p.x) + 6:.1f}" y="{sy(p.y) - 6:.1f}" font-size="12" font-weight="700">{i}</text>')
    out.append("</svg>")
    return Raw("".join(out))
