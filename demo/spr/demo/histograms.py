"""SVG histograms for the pair viewer, with axes, ticks and axis labels (no scripts, no libraries)."""

from __future__ import annotations

import html
from collections.abc import Sequence

WIDTH, HEIGHT = 340, 190  # the whole figure, pixels
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 40  # plot margins: room for the y ticks and the x label


def histogram(
    title: str,
    values: Sequence[float],
    colour: str,
    *,
    x_label: str,
    value_range: tuple[float, float] | None = None,
    bins: int = 20,
) -> str:
    """A ``<figure>`` with an SVG histogram of ``values``; ``value_range`` fixes the x axis (shared
    by figures meant to be compared). Empty ``values`` give an empty string."""
    if not values:
        return ""
    lo, hi = value_range if value_range is not None else (min(values), max(values))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5  # every value equal: a unit-wide axis around it
    width = (hi - lo) / bins
    counts = [0] * bins
    for value in values:
        counts[min(max(int((value - lo) / width), 0), bins - 1)] += 1
    top = max(counts)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    parts = []
    for i, count in enumerate(counts):
        bar_h = plot_h * count / top
        parts.append(
            f'<rect class="bar" x="{LEFT + i * bar_w + 0.5:.1f}" y="{TOP + plot_h - bar_h:.1f}" '
            f'width="{bar_w - 1:.1f}" height="{bar_h:.1f}" fill="{colour}">'
            f"<title>{lo + i * width:.3f} to {lo + (i + 1) * width:.3f}: {count}</title></rect>"
        )
    x_axis, y_axis = TOP + plot_h, LEFT
    parts.append(f'<line class="axis" x1="{y_axis}" y1="{x_axis}" x2="{LEFT + plot_w}" y2="{x_axis}"/>')
    parts.append(f'<line class="axis" x1="{y_axis}" y1="{TOP}" x2="{y_axis}" y2="{x_axis}"/>')
    for fraction in (0.0, 0.5, 1.0):
        x = LEFT + plot_w * fraction
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{x_axis}" x2="{x:.1f}" y2="{x_axis + 4}"/>')
        parts.append(
            f'<text class="tick-label" x="{x:.1f}" y="{x_axis + 15}" text-anchor="middle">'
            f"{lo + (hi - lo) * fraction:.2f}</text>"
        )
    for count in sorted({0, top // 2, top}):
        y = TOP + plot_h - plot_h * count / top
        parts.append(f'<line class="tick" x1="{y_axis - 4}" y1="{y:.1f}" x2="{y_axis}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick-label" x="{y_axis - 6}" y="{y + 4:.1f}" text-anchor="end">{count}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{html.escape(x_label)}</text>"
    )
    parts.append(
        f'<text class="axis-label" x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">pairs</text>'
    )
    caption = f"{html.escape(title)} (n={len(values)}, min {min(values):.3f}, max {max(values):.3f})"
    return (
        f'<figure class="histogram"><figcaption>{caption}</figcaption>'
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f"{''.join(parts)}</svg></figure>"
    )
