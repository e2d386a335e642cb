"""Line plots as inline SVG, drawn on the server.

Chosen over a JavaScript chart library: the plots then need no script at all (the page works
offline and without JavaScript, and the Content-Security-Policy allows no script), nothing is
vendored, and a plot is a pure function of its numbers, tested like one. Colours come from the
stylesheet's classes (series-0..3), so the plots follow the light or dark theme.
"""

from __future__ import annotations

import math
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 28
TICKS = 4


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return float(10 * power)


def short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _time_label(at: datetime, span_s: float) -> str:
    return at.strftime("%H:%M") if span_s <= 86400 else at.strftime("%m-%d")


def line_plot(
    title: str,
    times: list[datetime],
    series: dict[str, list[float | None]],
    *,
    unit: str = "",
) -> Markup:
    """One plot: a line per series over `times` (None: no value, the line breaks there)."""
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for line in series.values() for v in line if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    count = max(len(times), 2)
    span_s = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0

    def x(i: int) -> float:
        return LEFT + width * i / (count - 1)

    def y(v: float) -> float:
        return TOP + height * (1 - v / top)

    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="plot-title" x="{LEFT}" y="16">{escape(title)}'
        f'<tspan class="plot-unit"> ({escape(unit)})</tspan></text>',
    ]
    for t in range(TICKS + 1):
        value = top * t / TICKS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + width}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{short(value)}</text>'
        )
    if times:
        last = len(times) - 1
        for i in sorted({0, last // 3, 2 * last // 3, last}):
            anchor = "start" if i == 0 else "end" if i == last else "middle"
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                f"{_time_label(times[i], span_s)}</text>"
            )
    legend_x = WIDTH - RIGHT
    for n, (name, line) in enumerate(reversed(list(series.items()))):
        index = len(series) - 1 - n
        for segment in _segments(line):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in segment)
            total = sum(v for _, v in segment)
            parts.append(
                f'<polyline class="series-{index % 4}" fill="none" points="{points}">'
                f"<title>{escape(name)}: {short(total)} in view</title></polyline>"
            )
        label = escape(name)
        legend_x -= 8 + 7 * len(name)
        parts.append(
            f'<text class="legend series-{index % 4}" x="{legend_x:.0f}" y="16">{label}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it is escaped above)


def _segments(line: list[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive values; a lone point is drawn as a tiny segment of its own."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(line):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        runs.append(current)
    return [run if len(run) > 1 else [run[0], (run[0][0], run[0][1])] for run in runs]
