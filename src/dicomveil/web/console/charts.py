"""Server-rendered charts: a horizontal bar chart as inline SVG (no script, no style)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

__all__ = ["bar_chart"]

_ROW = 22
_LABEL = 150
_BAR = 260


def bar_chart(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """An accessible SVG bar chart of ``items`` (label, value), largest bar full width.

    The chart carries a ``<title>`` and each bar a text value, so screen readers and
    text-only clients get the numbers too.
    """
    height = max(1, len(items)) * _ROW + 8
    width = _LABEL + _BAR + 90
    peak = max((value for _, value in items), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not items:
        parts.append('<text x="4" y="18" fill="#333">no data yet</text>')
    for row, (label, value) in enumerate(items):
        y = 4 + row * _ROW
        length = max(1.0, _BAR * value / peak) if value else 0.0
        shown = f"{value:,.0f}{unit}"
        parts.append(
            f'<text x="{_LABEL - 6}" y="{y + 15}" text-anchor="end" fill="#222">'
            f"{escape(label)}</text>"
            f'<rect x="{_LABEL}" y="{y + 3}" width="{length:.1f}" height="{_ROW - 8}" '
            'fill="#2b6cb0"/>'
            f'<text x="{_LABEL + length + 6:.1f}" y="{y + 15}" fill="#222">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
