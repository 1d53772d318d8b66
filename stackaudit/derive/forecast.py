""" "Disk full in N days": a robust fit of the recent fill rate. Pure functions of a sample series.

The slope is Theil-Sen's (the median of the slopes between every pair of samples): up to ~29% of the
samples can be wild (a temporary file, a log burst) without moving it, unlike least squares.
Samples before the last large drop (a cleanup, a log rotation) are ignored, since the disk's history
before it says nothing about the rate since. A flat or shrinking disk has no forecast.
References: Theil (1950), Sen (1968); Wikipedia "Theil–Sen estimator".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

DAY_SECONDS = 86400.0

MAX_POINTS = 300  # pairwise slopes are O(n^2): 300 points = 45k pairs, a few milliseconds
MAX_DAYS = 3650.0  # a fill that takes longer than ten years is not a forecast anyone acts on


@dataclass(frozen=True)
class Forecast:
    days_to_full: float
    rate_bytes_per_day: float
    used_bytes: float  # the fitted value at `now`
    capacity_bytes: float
    samples: int
    span_days: float


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line through (x, y) points; needs two distinct x."""
    slopes = [
        (yj - yi) / (xj - xi) for i, (xi, yi) in enumerate(points) for xj, yj in points[i + 1 :] if xj != xi
    ]
    if not slopes:
        raise ValueError("need at least two samples at different times")
    slope = median(slopes)
    intercept = median(y - slope * x for x, y in points)
    return slope, intercept


def since_last_drop(
    samples: Sequence[tuple[float, float]], drop_bytes: float
) -> Sequence[tuple[float, float]]:
    """The samples after the last fall of more than `drop_bytes` between two consecutive samples."""
    start = 0
    for i in range(1, len(samples)):
        if samples[i - 1][1] - samples[i][1] > drop_bytes:
            start = i
    return samples[start:]


def thin(samples: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` samples, evenly spread, always keeping the newest."""
    if len(samples) <= limit:
        return list(samples)
    step = (len(samples) - 1) / (limit - 1)
    return [samples[round(i * step)] for i in range(limit)]


def forecast_full(
    samples: Sequence[tuple[float, float]],
    capacity_bytes: float,
    now: float | None = None,
    window_days: float = 7.0,
    min_samples: int = 4,
    min_span_seconds: float = 3600.0,
    drop_fraction: float = 0.05,
) -> Forecast | None:
    """When used bytes reach `capacity_bytes` (used + available now) at the recent rate, or None.

    `samples` are (unix time, used bytes), oldest first. None when there are too few samples or
    too short a span to say anything, or when the disk is not filling.
    """
    if not samples or capacity_bytes <= 0:
        return None
    now = samples[-1][0] if now is None else now
    recent = [s for s in samples if now - window_days * DAY_SECONDS <= s[0] <= now]
    recent = list(since_last_drop(recent, drop_fraction * capacity_bytes))
    if len(recent) < min_samples or recent[-1][0] - recent[0][0] < min_span_seconds:
        return None
    origin = recent[0][0]  # fit on small x values: keeps float precision
    slope, intercept = theil_sen([(t - origin, y) for t, y in thin(recent)])
    if slope <= 0:
        return None
    fitted_now = intercept + slope * (now - origin)
    days = max(0.0, (capacity_bytes - fitted_now) / slope / DAY_SECONDS)
    if days > MAX_DAYS:
        return None
    return Forecast(
        days_to_full=days,
        rate_bytes_per_day=slope * DAY_SECONDS,
        used_bytes=fitted_now,
        capacity_bytes=capacity_bytes,
        samples=len(recent),
        span_days=(recent[-1][0] - recent[0][0]) / DAY_SECONDS,
    )
