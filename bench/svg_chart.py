"""Line charts as SVG text, written with the standard library only (matplotlib is not in the
lock, and two small charts do not need it): bench/sweep.py draws its plot with this."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
WIDTH, HEIGHT = 460, 320  # one chart
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 40, 48  # margins around the plotting area


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]  # (x, y), x > 0 (the x axis is log 2)


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def chart(title: str, y_label: str, series: list[Series], x_label: str, dx: float = 0) -> str:
    """One chart as an SVG group, shifted right by `dx`: x on a log-2 axis, y from 0."""
    xs = sorted({x for s in series for x, _ in s.points})
    y_top = _nice_max(max((y for s in series for _, y in s.points), default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo, hi = math.log2(xs[0]), math.log2(xs[-1])

    def px(x: float) -> float:
        return LEFT + (plot_w * (math.log2(x) - lo) / (hi - lo) if hi > lo else plot_w / 2)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_top)

    parts = [
        f'<g transform="translate({dx},0)">',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">'
        f"{escape(title)}</text>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for i in range(5):  # horizontal grid and y ticks
        y = y_top * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{y:,.0f}</text>"
        )
    for x in xs:
        parts.append(
            f'<text x="{px(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
            f'font-size="11">{x:g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle" font-size="12">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(14,{TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">{escape(y_label)}</text>'
    )
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>'
            for x, y in s.points
        )
        parts.append(
            f'<text x="{LEFT + 8}" y="{TOP + 16 + 14 * n}" font-size="12" fill="{colour}">'
            f"{escape(s.name)}</text>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def document(charts: list[str], note: str = "") -> str:
    """Charts side by side in one SVG document, with a note under them."""
    height = HEIGHT + (24 if note else 0)
    body = "\n".join(charts)
    foot = (
        f'<text x="8" y="{HEIGHT + 16}" font-size="11" fill="#555">{escape(note)}</text>'
        if note
        else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH * len(charts)}" '
        f'height="{height}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n{foot}\n</svg>\n'
    )
