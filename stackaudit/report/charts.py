"""Small inline SVG charts, readable without colour: every segment has a hatch pattern and a label.

About 1-2 KB a chart, no plotting stack. Each SVG has role="img" with a <title> and <desc> that say
in words, with the numbers, what the picture shows (screen readers, printouts in black and white).
Element ids are prefixed per chart, so several charts can sit in one HTML page without clashing ids
(the patterns and aria-labelledby targets stay unique), and each chart is a well-formed XML document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from stackaudit.units import format_bytes

WIDTH = 480  # narrow: on a 375px phone the text still reads at ~70% scale
FONT = 'font-family="system-ui, sans-serif"'
# (fill, pattern): fills are light enough to print, patterns tell segments apart without colour.
PALETTE = (("#4c78a8", None), ("#f58518", "diag"), ("#54a24b", "dots"), ("#e45756", "cross"),
           ("#72b7b2", "vert"), ("#b279a2", "horiz"), ("#9d755d", "diag2"), ("#bab0ac", None))
FREE_STYLE = ("#ffffff", None)  # "free" space: white with an outline, so it reads as empty
_PATTERN_SHAPES = {
    "diag": ('width="6" height="6"', '<path d="M0 6L6 0" stroke="#000" stroke-opacity=".45"/>'),
    "diag2": ('width="6" height="6"', '<path d="M0 0L6 6" stroke="#000" stroke-opacity=".45"/>'),
    "dots": ('width="5" height="5"', '<circle cx="2.5" cy="2.5" r="1" fill="#000" fill-opacity=".5"/>'),
    "cross": ('width="6" height="6"', '<path d="M0 3H6M3 0V6" stroke="#000" stroke-opacity=".45"/>'),
    "vert": ('width="4" height="4"', '<path d="M2 0V4" stroke="#000" stroke-opacity=".45"/>'),
    "horiz": ('width="4" height="4"', '<path d="M0 2H4" stroke="#000" stroke-opacity=".45"/>'),
}


@dataclass(frozen=True)
class Segment:
    label: str
    value: float
    free: bool = False  # drawn empty (outlined) rather than filled: free disk, spare connections


def _style(index: int, segment: Segment | None = None) -> tuple[str, str | None]:
    if segment is not None and segment.free:
        return FREE_STYLE
    return PALETTE[index % len(PALETTE)]


def _chart_id(title: str, desc: str) -> str:
    """Stable per content, so re-rendering a report gives the same file."""
    return "c" + hashlib.sha1(f"{title}\0{desc}".encode()).hexdigest()[:8]


def _defs(cid: str) -> str:
    patterns = "".join(f'<pattern id="{cid}-{name}" {size} patternUnits="userSpaceOnUse">{shape}</pattern>'
                       for name, (size, shape) in _PATTERN_SHAPES.items())
    return f"<defs>{patterns}</defs>"


def _svg(width: float, height: float, title: str, desc: str, body: Sequence[str]) -> str:
    cid = _chart_id(title, desc)
    content = "".join(body).replace("url(#PAT-", f"url(#{cid}-")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" class="chart" '
            f'aria-labelledby="{cid}-t {cid}-d">'
            f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>'
            f"{_defs(cid)}{content}</svg>")


def _box(x: float, y: float, w: float, h: float, style: tuple[str, str | None]) -> str:
    fill, pattern = style
    outline = ' stroke="#333" stroke-width="1"' if fill == "#ffffff" else ""
    rect = f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{fill}"{outline}/>'
    if pattern:
        rect += (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" '
                 f'fill="url(#PAT-{pattern})"/>')
    return rect


def fmt(value: float, unit: str) -> str:
    """A value as the charts write it: bytes in binary units, else the number and its unit."""
    if unit == "bytes":
        return format_bytes(value)
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{number} {unit}".rstrip()


def _text(x: float, y: float, text: str, size: int = 14, anchor: str = "start", weight: str = "") -> str:
    bold = ' font-weight="bold"' if weight else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {FONT}{bold}>'
            f"{escape(text)}</text>")


def stacked_bar(title: str, segments: Sequence[Segment], capacity: float | None = None,
                unit: str = "bytes", capacity_label: str = "total") -> str:
    """One horizontal bar split into segments, with an optional capacity line (RAM, max_connections).

    A total above the capacity shows as a bar running past the dashed line.
    """
    bar_y, bar_h, left = 10, 36, 10
    usable = WIDTH - 2 * left
    total = sum(max(s.value, 0) for s in segments)
    scale_max = max(total, capacity or 0) or 1.0
    parts, x = [], float(left)
    for i, seg in enumerate(segments):
        w = usable * max(seg.value, 0) / scale_max
        parts.append(_box(x, bar_y, w, bar_h, _style(i, seg)))
        x += w
    y = bar_y + bar_h
    if capacity:
        cx = left + usable * capacity / scale_max
        parts.append(f'<line x1="{cx:.1f}" y1="4" x2="{cx:.1f}" y2="{y + 6}" stroke="#000" '
                     f'stroke-width="2" stroke-dasharray="5 3"/>')
        anchor = "end" if cx > WIDTH / 2 else "start"
        parts.append(_text(cx, y + 22, f"{capacity_label}: {fmt(capacity, unit)}", 14, anchor, "bold"))
        y += 22
    legend_y = y + 28
    for i, seg in enumerate(segments):
        row = legend_y + 22 * i
        parts.append(_box(left, row - 13, 15, 15, _style(i, seg)))
        base = capacity or total  # a share of RAM / max_connections / the disk when there is one
        share = f" ({100 * seg.value / base:.0f}%)" if base else ""
        parts.append(_text(left + 22, row, f"{seg.label}: {fmt(seg.value, unit)}{share}"))
    height = legend_y + 22 * len(segments) - 4
    words = ", ".join(f"{s.label} {fmt(s.value, unit)}" for s in segments)
    desc = f"{title}: {words}; together {fmt(total, unit)}"
    if capacity:
        desc += f"; {capacity_label} {fmt(capacity, unit)}"
    return _svg(WIDTH, height, title, desc, parts)


def paired_bars(title: str, rows: Sequence[tuple[str, float, float]], unit: str = "ms",
                labels: tuple[str, str] = ("before", "after")) -> str:
    """Before/after pairs per row (verify): the second bar is hatched so pairs read in grey too."""
    row_h, bar_x, bar_w = 54, 10, 300
    peak = max((max(a, b) for _, a, b in rows), default=1.0) or 1.0
    parts = []
    for i, (label, first, second) in enumerate(rows):
        y = 6 + i * row_h
        parts.append(_text(bar_x, y + 12, label[:60]))
        for j, value in enumerate((first, second)):
            w = bar_w * max(value, 0) / peak
            by = y + 18 + j * 15
            parts.append(_box(bar_x, by, w, 13, _style(j)))
            parts.append(_text(bar_x + w + 6, by + 12, f"{labels[j]} {fmt(value, unit)}", 13))
    height = 10 + row_h * max(len(rows), 1)
    desc = "; ".join(f"{label}: {labels[0]} {fmt(a, unit)}, {labels[1]} {fmt(b, unit)}"
                     for label, a, b in rows)
    return _svg(WIDTH, height, title, f"{title}: {desc}", parts)


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def line_with_forecast(title: str, points: Sequence[tuple[float, float]], capacity: float,
                       forecast_full_at: float | None = None, unit: str = "bytes") -> str:
    """Used bytes over time (seconds since epoch) with the capacity line and the forecast to full.

    The measured line is solid, the forecast dashed (the difference survives a black-and-white print).
    """
    if not points:
        return ""
    width, height, pad_l, pad_r, pad_t, pad_b = WIDTH, 220, 12, 12, 24, 44
    t0 = points[0][0]
    t_end = max(points[-1][0], forecast_full_at or points[-1][0])
    span = (t_end - t0) or 1.0
    top = max(capacity, max(v for _, v in points)) or 1.0

    def xy(t: float, v: float) -> tuple[float, float]:
        return (pad_l + (width - pad_l - pad_r) * (t - t0) / span,
                height - pad_b - (height - pad_t - pad_b) * v / top)

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f} {y:.1f}"
                    for i, (x, y) in enumerate(xy(t, v) for t, v in points))
    cap_y = xy(t0, capacity)[1]
    base_y = height - pad_b
    parts = [f'<line x1="{pad_l}" y1="{base_y}" x2="{width - pad_r}" y2="{base_y}" stroke="#333"/>',
             f'<line x1="{pad_l}" y1="{cap_y:.1f}" x2="{width - pad_r}" y2="{cap_y:.1f}" stroke="#000" '
             f'stroke-dasharray="5 3"/>',
             _text(pad_l, cap_y - 6, f"capacity {fmt(capacity, unit)}", 12, weight="bold"),
             f'<path d="{path}" fill="none" stroke="#4c78a8" stroke-width="2.5"/>',
             _text(pad_l, base_y + 18, _date(t0), 12),
             _text(width - pad_r, base_y + 18, _date(t_end), 12, "end")]
    last_t, last_v = points[-1]
    lx, ly = xy(last_t, last_v)
    parts.append(f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="3.5" fill="#4c78a8"/>')
    parts.append(_text(min(lx, width - 140), ly + 18, f"now {fmt(last_v, unit)}", 13))
    desc = (f"{title}: {len(points)} samples from {_date(t0)} to {_date(last_t)}, "
            f"last {fmt(last_v, unit)} of {fmt(capacity, unit)}")
    if forecast_full_at:
        x2, y2 = xy(forecast_full_at, capacity)
        parts.append(f'<path d="M{lx:.1f} {ly:.1f} L{x2:.1f} {y2:.1f}" stroke="#c03030" stroke-width="2" '
                     f'stroke-dasharray="7 4" fill="none"/>')
        parts.append(_text(min(x2, width - pad_r), y2 + 16, f"full ~{_date(forecast_full_at)}", 12, "end"))
        desc += f"; the dashed line is the forecast: full around {_date(forecast_full_at)}"
    return _svg(width, height, title, desc, parts)
