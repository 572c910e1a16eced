"""Bar charts as plain geometry for the SVG in templates/_bars.html: no charting library to ship."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, BAR_AREA, ROW = 640, 420, 22


@dataclass
class Bar:
    label: str
    value: float
    text: str
    y: int
    width: float  # of the whole bar, in SVG units
    part: float  # of the highlighted part (rejects within containers), 0 when none


@dataclass
class Chart:
    title: str
    bars: list[Bar]
    height: int
    width: int = WIDTH
    bar_x: int = WIDTH - BAR_AREA - 10


def bars(title: str, rows: list[tuple[str, float, float]], unit: str = "") -> Chart:
    """One horizontal bar per (label, value, highlighted part of it)."""
    top = max((value for _, value, _ in rows), default=0) or 1
    out = []
    for i, (label, value, part) in enumerate(rows):
        text = f"{value:.1f}{unit}" if isinstance(value, float) and not value.is_integer() else f"{value:g}{unit}"
        out.append(Bar(label, value, text, 10 + i * ROW, BAR_AREA * value / top, BAR_AREA * part / top))
    return Chart(title, out, 20 + max(1, len(rows)) * ROW)
