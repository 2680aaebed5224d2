"""Experiment charts drawn on the server as SVG: no script, no chart library, prints as is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from console.significance import rate_interval


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    converted: int
    visitors: int
    revenue_per_visitor: float


def conversion_chart(bars: Sequence[Bar], width: int = 520) -> Markup:
    """Horizontal bars of conversion rate per variant with their 95% intervals as whiskers,
    and revenue per visitor written beside each."""
    row, left, right = 34, 110, 150
    plot = width - left - right
    rates = [(b.converted / b.visitors if b.visitors else 0.0) for b in bars]
    intervals = [rate_interval(b.converted, b.visitors) for b in bars]
    top = max([0.01, *rates, *(high for _, high in intervals)])
    height = row * len(bars) + 24

    def x(value: float) -> float:
        return left + plot * value / top

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Conversion rate per variant, with 95% intervals</title>",
    ]
    for i, (bar, rate, (low, high)) in enumerate(zip(bars, rates, intervals, strict=True)):
        y = 8 + i * row
        mid = y + 11
        parts += [
            f'<text x="{left - 8}" y="{mid + 4}" text-anchor="end">{escape(bar.label)}</text>',
            f'<rect x="{left}" y="{y}" width="{max(1.0, x(rate) - left):.1f}" height="22" '
            f'class="bar{" base" if i == 0 else ""}"/>',
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{mid}" y2="{mid}" class="whisker"/>',
            f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{mid - 5}" y2="{mid + 5}" '
            'class="whisker"/>',
            f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{mid - 5}" y2="{mid + 5}" '
            'class="whisker"/>',
            f'<text x="{width - right + 8}" y="{mid + 4}">{rate:.1%} · '
            f"{bar.revenue_per_visitor:.2f}/visitor</text>",
        ]
    axis = height - 10
    parts.append(f'<text x="{left}" y="{axis + 6}" class="axis">0%</text>')
    parts.append(
        f'<text x="{left + plot}" y="{axis + 6}" text-anchor="end" class="axis">{top:.1%}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
