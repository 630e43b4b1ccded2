"""Inline SVG charts rendered on the server (no JavaScript, nothing fetched): a line chart of
scores over time and a histogram. Text goes through ``html.escape``; numbers are formatted here."""
from __future__ import annotations

from html import escape
from typing import Sequence

COLORS = ("#1f77b4", "#d62728", "#2ca02c")


def line_chart(times: Sequence[str], series: dict[str, Sequence[float]], ranges: dict[str, tuple[float, float]],
               width: int = 640, height: int = 160) -> str:
    """One small panel per series, x = position in ``times`` (labels at both ends), y scaled to its range."""
    if not times:
        return "<p class='muted'>no score history yet</p>"
    parts = []
    n = len(times)
    pad_l, pad_r, pad_t, pad_b = 44, 10, 18, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    for i, (name, values) in enumerate(series.items()):
        lo, hi = ranges.get(name, (min(values), max(values) or 1.0))
        span = (hi - lo) or 1.0

        def xy(j: int, v: float) -> tuple[float, float]:
            x = pad_l + (w * j / (n - 1) if n > 1 else w / 2)
            return x, pad_t + h - h * (min(max(v, lo), hi) - lo) / span

        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(j, v) for j, v in enumerate(values)))
        dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5'><title>{escape(times[j])}: {v:.3f}</title></circle>"
                       for j, (x, y, v) in enumerate((*xy(j, v), v) for j, v in enumerate(values)))
        color = COLORS[i % len(COLORS)]
        parts.append(
            f"<svg class='chart' role='img' aria-label='{escape(name)} over time' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>"
            f"<text x='{pad_l}' y='12' class='title'>{escape(name)}</text>"
            f"<line x1='{pad_l}' y1='{pad_t + h}' x2='{pad_l + w}' y2='{pad_t + h}' class='axis'/>"
            f"<line x1='{pad_l}' y1='{pad_t}' x2='{pad_l}' y2='{pad_t + h}' class='axis'/>"
            f"<text x='{pad_l - 4}' y='{pad_t + 4}' text-anchor='end'>{hi:g}</text>"
            f"<text x='{pad_l - 4}' y='{pad_t + h}' text-anchor='end'>{lo:g}</text>"
            f"<text x='{pad_l}' y='{height - 6}'>{escape(times[0])}</text>"
            f"<text x='{pad_l + w}' y='{height - 6}' text-anchor='end'>{escape(times[-1])}</text>"
            f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>"
            f"<g fill='{color}'>{dots}</g></svg>")
    return "".join(parts)


def histogram(name: str, values: Sequence[float], lo: float, hi: float, bins: int = 20,
              width: int = 300, height: int = 120) -> str:
    if not values:
        return f"<p class='muted'>{escape(name)}: no scores yet</p>"
    counts = [0] * bins
    span = (hi - lo) or 1.0
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / span * bins)))] += 1
    top = max(counts)
    pad_b, pad_t = 18, 16
    h = height - pad_b - pad_t
    bw = width / bins
    bars = "".join(
        f"<rect x='{j * bw + 1:.1f}' y='{pad_t + h - h * c / top:.1f}' width='{bw - 2:.1f}' height='{h * c / top:.1f}'>"
        f"<title>{lo + span * j / bins:g}-{lo + span * (j + 1) / bins:g}: {c}</title></rect>"
        for j, c in enumerate(counts))
    return (f"<svg class='chart' role='img' aria-label='{escape(name)} distribution' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}'><text x='0' y='11' class='title'>{escape(name)} "
            f"(n={len(values)})</text><g fill='#1f77b4'>{bars}</g>"
            f"<text x='0' y='{height - 4}'>{lo:g}</text><text x='{width}' y='{height - 4}' text-anchor='end'>{hi:g}</text>"
            f"</svg>")


def bar_rows(counts: dict[str, int], width: int = 300) -> str:
    """Horizontal bars with their labels (counts per rule)."""
    if not counts:
        return "<p class='muted'>none</p>"
    top = max(counts.values()) or 1
    rows = "".join(
        f"<text x='0' y='{18 * i + 13}'>{escape(k)}</text>"
        f"<rect x='170' y='{18 * i + 3}' width='{(width - 210) * v / top:.1f}' height='12' fill='#d62728'/>"
        f"<text x='{175 + (width - 210) * v / top:.1f}' y='{18 * i + 13}'>{v}</text>"
        for i, (k, v) in enumerate(counts.items()))
    return (f"<svg class='chart' role='img' aria-label='counts' width='{width}' height='{18 * len(counts) + 4}'>"
            f"{rows}</svg>")
