"""A small, dependency-free SVG line chart for reports.

Hand-written on purpose: matplotlib's import alone takes about 0.6 s on a 2-core machine, more
than half the budget of a whole `cmperf plan`; a report needs axes, ticks, lines and a legend only.
"""

from __future__ import annotations

import math
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def line_chart(series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str,
               markers: dict[str, tuple[float, float]] | None = None, vlines: dict[str, float] | None = None,
               width: int = 720, height: int = 420) -> str:
    """series: name -> (xs, ys), drawn as step-free polylines with dots; markers: labelled points."""
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    pts += list((markers or {}).values())
    xs_all = [p[0] for p in pts] + list((vlines or {}).values())
    ys_all = [p[1] for p in pts]
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = 0.0, max(ys_all) * 1.08 if ys_all else 1.0
    if x1 == x0:
        x1 = x0 + 1
    L, R, T, B = 70, 20, 40, 55
    pw, ph = width - L - R, height - T - B

    def sx(x):
        return L + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return T + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" y1="{T + ph}" x2="{sx(t):.1f}" y2="{T + ph + 5}" stroke="#444"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{T + ph + 18}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{L - 5}" y1="{sy(t):.1f}" x2="{L + pw}" y2="{sy(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 8}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {T + ph / 2})">{escape(ylabel)}</text>')
    for i, (name, x) in enumerate((vlines or {}).items()):
        out.append(f'<line x1="{sx(x):.1f}" y1="{T}" x2="{sx(x):.1f}" y2="{T + ph}" stroke="#888" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{sx(x) + 4:.1f}" y="{T + 14 + 14 * i}" fill="#555">{escape(name)}</text>')
    for i, (name, (xs, ys)) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>' for x, y in zip(xs, ys)]
        out.append(f'<text x="{L + pw - 8}" y="{T + ph - 10 - 16 * i}" text-anchor="end" fill="{c}">{escape(name)}</text>')
    for name, (x, y) in (markers or {}).items():
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="none" stroke="black" stroke-width="1.5"/>')
        out.append(f'<text x="{sx(x) + 8:.1f}" y="{sy(y) - 6:.1f}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
