"""Small inline SVG charts, readable without colour: every segment has a hatch pattern and a label.

About 1 KB a chart, no plotting stack. Each chart is a `<figure>` with a `<figcaption>`, and the SVG
has role="img" with a <title> and <desc> that say in words what the picture shows (screen readers,
printouts in black and white).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from stackaudit.units import format_bytes

# (fill, pattern id): fills are light enough to print, patterns tell segments apart without colour.
PALETTE = (("#4c78a8", "p-solid"), ("#f58518", "p-diag"), ("#54a24b", "p-dots"), ("#e45756", "p-cross"),
           ("#72b7b2", "p-vert"), ("#b279a2", "p-horiz"), ("#9d755d", "p-diag2"), ("#bab0ac", "p-none"))
PATTERNS = """<defs>
<pattern id="p-diag" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0 6L6 0" stroke="#000" stroke-opacity=".35"/></pattern>
<pattern id="p-diag2" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0 0L6 6" stroke="#000" stroke-opacity=".35"/></pattern>
<pattern id="p-dots" width="5" height="5" patternUnits="userSpaceOnUse"><circle cx="2.5" cy="2.5" r="1" fill="#000" fill-opacity=".4"/></pattern>
<pattern id="p-cross" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0 3H6M3 0V6" stroke="#000" stroke-opacity=".35"/></pattern>
<pattern id="p-vert" width="4" height="4" patternUnits="userSpaceOnUse"><path d="M2 0V4" stroke="#000" stroke-opacity=".35"/></pattern>
<pattern id="p-horiz" width="4" height="4" patternUnits="userSpaceOnUse"><path d="M0 2H4" stroke="#000" stroke-opacity=".35"/></pattern>
</defs>"""  # noqa: E501 - SVG markup reads better on one line per pattern


@dataclass(frozen=True)
class Segment:
    label: str
    value: float


def _style(index: int) -> tuple[str, str]:
    return PALETTE[index % len(PALETTE)]


def _svg_open(width: int, height: int, title: str, desc: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" aria-labelledby="t d">'
            f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{PATTERNS}")


def _fmt(value: float, unit: str) -> str:
    return format_bytes(value) if unit == "bytes" else f"{value:g}{unit and ' ' + unit}"


def stacked_bar(title: str, segments: Sequence[Segment], capacity: float | None = None,
                unit: str = "bytes", capacity_label: str = "total") -> str:
    """One horizontal bar split into segments, with an optional capacity line (RAM, max_connections)."""
    width, bar_y, bar_h = 640, 10, 34
    total = sum(s.value for s in segments)
    scale_max = max(total, capacity or 0) or 1.0
    usable = width - 20
    parts, x = [], 10.0
    for i, seg in enumerate(segments):
        w = usable * seg.value / scale_max
        fill, pattern = _style(i)
        parts.append(f'<rect x="{x:.1f}" y="{bar_y}" width="{max(w, 0):.1f}" height="{bar_h}" fill="{fill}"/>')
        if pattern != "p-solid" and pattern != "p-none":
            parts.append(f'<rect x="{x:.1f}" y="{bar_y}" width="{max(w, 0):.1f}" height="{bar_h}" '
                         f'fill="url(#{pattern})"/>')
        x += w
    if capacity:
        cx = 10 + usable * capacity / scale_max
        parts.append(f'<line x1="{cx:.1f}" y1="4" x2="{cx:.1f}" y2="{bar_y + bar_h + 6}" stroke="#000" '
                     f'stroke-width="2" stroke-dasharray="4 2"/>')
        anchor = "end" if cx > width - 120 else "start"
        parts.append(f'<text x="{cx:.1f}" y="{bar_y + bar_h + 18}" font-size="11" text-anchor="{anchor}">'
                     f"{escape(capacity_label)}: {_fmt(capacity, unit)}</text>")
    legend_y = bar_y + bar_h + 36
    for i, seg in enumerate(segments):
        fill, pattern = _style(i)
        y = legend_y + 16 * i
        parts.append(f'<rect x="10" y="{y - 10}" width="12" height="12" fill="{fill}"/>')
        if pattern not in ("p-solid", "p-none"):
            parts.append(f'<rect x="10" y="{y - 10}" width="12" height="12" fill="url(#{pattern})"/>')
        share = f" ({100 * seg.value / total:.0f}%)" if total else ""
        parts.append(f'<text x="28" y="{y}" font-size="12">{escape(seg.label)}: {_fmt(seg.value, unit)}'
                     f"{share}</text>")
    height = legend_y + 16 * len(segments)
    words = ", ".join(f"{s.label} {_fmt(s.value, unit)}" for s in segments)
    desc = f"{title}: {words}" + (f"; {capacity_label} {_fmt(capacity, unit)}" if capacity else "")
    return _svg_open(width, height, title, desc) + "".join(parts) + "</svg>"


def paired_bars(title: str, rows: Sequence[tuple[str, float, float]], unit: str = "ms",
                labels: tuple[str, str] = ("before", "after")) -> str:
    """Before/after pairs per row (verify): the second bar is hatched so pairs read in grey too."""
    width, row_h = 640, 40
    peak = max((max(a, b) for _, a, b in rows), default=1.0) or 1.0
    parts = []
    for i, (label, first, second) in enumerate(rows):
        y = 10 + i * row_h
        parts.append(f'<text x="10" y="{y + 10}" font-size="12">{escape(label[:40])}</text>')
        for j, value in enumerate((first, second)):
            w = 380 * value / peak
            fill, pattern = _style(j)
            by = y + 14 + j * 11
            parts.append(f'<rect x="200" y="{by}" width="{w:.1f}" height="10" fill="{fill}"/>')
            if j:
                parts.append(f'<rect x="200" y="{by}" width="{w:.1f}" height="10" fill="url(#{pattern})"/>')
            parts.append(f'<text x="{205 + w:.1f}" y="{by + 9}" font-size="10">{labels[j]} '
                         f"{_fmt(value, unit)}</text>")
    height = 20 + row_h * len(rows)
    desc = "; ".join(f"{label}: {labels[0]} {_fmt(a, unit)}, {labels[1]} {_fmt(b, unit)}"
                     for label, a, b in rows)
    return _svg_open(width, height, title, desc) + "".join(parts) + "</svg>"


def line_with_forecast(title: str, points: Sequence[tuple[float, float]], capacity: float,
                       forecast_full_at: float | None = None, unit: str = "bytes") -> str:
    """Used bytes over time (seconds since epoch) with the capacity line and the forecast to full."""
    width, height, pad = 640, 220, 40
    if not points:
        return ""
    t0 = points[0][0]
    t_end = max(points[-1][0], forecast_full_at or points[-1][0])
    span = (t_end - t0) or 1.0

    def xy(t: float, v: float) -> tuple[float, float]:
        return (pad + (width - 2 * pad) * (t - t0) / span,
                height - pad - (height - 2 * pad) * v / (capacity or 1.0))

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f} {y:.1f}"
                    for i, (x, y) in enumerate(xy(t, v) for t, v in points))
    cap_y = xy(t0, capacity)[1]
    parts = [f'<line x1="{pad}" y1="{cap_y:.1f}" x2="{width - pad}" y2="{cap_y:.1f}" stroke="#000" '
             f'stroke-dasharray="4 2"/>',
             f'<text x="{pad}" y="{cap_y - 4:.1f}" font-size="11">capacity {_fmt(capacity, unit)}</text>',
             f'<path d="{path}" fill="none" stroke="#4c78a8" stroke-width="2"/>']
    desc = f"{title}: {len(points)} samples, last {_fmt(points[-1][1], unit)} of {_fmt(capacity, unit)}"
    if forecast_full_at:
        x1, y1 = xy(*points[-1])
        x2, y2 = xy(forecast_full_at, capacity)
        parts.append(f'<path d="M{x1:.1f} {y1:.1f} L{x2:.1f} {y2:.1f}" stroke="#e45756" stroke-width="2" '
                     f'stroke-dasharray="6 3" fill="none"/>')
        parts.append(f'<text x="{min(x2, width - 150):.1f}" y="{y2 + 14:.1f}" font-size="11">forecast: full</text>')
        desc += "; the dashed line is the forecast to full"
    return _svg_open(width, height, title, desc) + "".join(parts) + "</svg>"
