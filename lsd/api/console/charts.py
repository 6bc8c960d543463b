"""Charts drawn on the server as inline SVG: a line chart over time buckets and a horizontal bar chart.

No script and nothing fetched: the markup is built here from numbers (every label is escaped) and placed in the
page as is. Each point carries a <title>, so a browser shows its value on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 180
PAD_LEFT = 56
PAD_RIGHT = 12
PAD_TOP = 14
PAD_BOTTOM = 24
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per label; None: no value in that bucket


def _tick(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.2g}"


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series], unit: str = "") -> Markup:
    """Lines over `labels` (time bucket starts, ISO), y from 0 to the largest value."""
    values = [v for s in series for v in s.values if v is not None]
    top = max(values, default=0.0) or 1.0
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    n = len(labels)

    def x(i: int) -> float:
        return PAD_LEFT + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_TOP + inner_h * (1 - v / top)

    base = PAD_TOP + inner_h
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}"/>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end">{escape(_tick(top) + unit)}</text>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end">0</text>',
    ]
    if n:
        for i in (0, n - 1) if n > 1 else (0,):
            anchor = "start" if i == 0 and n > 1 else "end"
            label = labels[i].replace("T", " ")[:16]
            parts.append(
                f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{escape(label)}</text>'
            )
    else:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data in this range</text>'
        )
    for k, s in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = [(x(i), y(v), v, labels[i]) for i, v in enumerate(s.values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for px, py, v, label in points:
            tip = f"{s.name} {label}: {v:,.2f}{unit}"
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"><title>{escape(tip)}</title></circle>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="swatch c{k % len(COLOURS)}"></i>{escape(s.name)}</span>'
        for k, s in enumerate(series)
    )
    return Markup(f'<figure class="chart"><figcaption>{escape(title)} {legend}</figcaption>{"".join(parts)}</figure>')


def bar_chart(title: str, bars: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """One horizontal bar per (label, value), as long as its share of the largest."""
    top = max((v for _, v in bars), default=0.0) or 1.0
    row_h = 22
    height = max(row_h * len(bars) + 8, 30)
    label_w = 180
    bar_w = WIDTH - label_w - 90
    parts = [f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">']
    if not bars:
        parts.append(f'<text class="empty" x="{WIDTH / 2}" y="20" text-anchor="middle">no data in this range</text>')
    for i, (label, value) in enumerate(bars):
        top_y = 4 + i * row_h
        width = bar_w * value / top
        parts.append(
            f'<text class="tick" x="{label_w - 6}" y="{top_y + 14}" text-anchor="end">{escape(label[:28])}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{top_y + 3}" width="{width:.1f}" height="{row_h - 8}" class="c{i % len(COLOURS)}">'
            f"<title>{escape(label)}: {value:,.2f}{escape(unit)}</title></rect>"
        )
        parts.append(
            f'<text class="tick" x="{label_w + width + 6:.1f}" y="{top_y + 14}">{escape(_tick(value) + unit)}</text>'
        )
    parts.append("</svg>")
    return Markup(f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{"".join(parts)}</figure>')
