"""The console's SVG plots and traffic arithmetic, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vnode.console.pages import age, amount
from vnode.console.plots import line_plot, nice_ceiling, short
from vnode.console.traffic import WINDOWS, Figures

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TIMES = [T0 + timedelta(minutes=i) for i in range(4)]


def test_nice_ceilings_and_short_numbers() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 2400, 0.3)] == [1, 1, 5, 10, 20, 2500, 0.5]
    assert [short(v) for v in (0, 999, 1500, 2_000_000, 3e9)] == ["0", "999", "1.5k", "2M", "3G"]


def test_a_plot_escapes_its_labels_and_breaks_at_missing_values() -> None:
    svg = str(line_plot("<b>x</b>", TIMES, {"a&b": [1.0, None, 3.0, 4.0]}, unit="sat"))
    assert svg.startswith('<svg class="plot"') and svg.endswith("</svg>")
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "a&amp;b" in svg
    assert svg.count("<polyline") == 2  # one run before the gap, one after
    assert "a&amp;b: 7 in view" in svg
    assert "12:00" in svg and "12:03" in svg


def test_an_empty_plot_still_draws_its_frame() -> None:
    svg = str(line_plot("nothing", [], {}, unit=""))
    assert "<polyline" not in svg and 'class="grid"' in svg


def test_latency_percentiles_from_power_of_two_buckets() -> None:
    figures = Figures(WINDOWS["hour"], TIMES[:2])
    figures.add(0, "latency", "03", 98, 0)  # 8-16 ms
    figures.add(0, "latency", "10", 2, 0)  # 1-2 s
    assert figures.latency(0.5) == [16.0, None]
    assert figures.latency(0.99) == [2048.0, None]
    figures.add(5, "latency", "01", 1, 0)  # outside the window: ignored
    assert figures.latency(0.5) == [16.0, None]


def test_amounts_and_ages_as_a_person_reads_them() -> None:
    assert amount(50_001_000) == "50\u2009001 sat"
    assert amount(1_500) == "1 sat + 500 msat"
    assert amount(1234, "rgb:x") == "1\u2009234"
    assert amount(None) == "—"
    assert age(timedelta(seconds=42)) == "42 s"
    assert age(timedelta(hours=3, minutes=5)) == "3 h"
    assert age(timedelta(days=2)) == "2 d"
