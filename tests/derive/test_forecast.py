"""The fill-rate forecast on synthetic series: linear, noisy, outliers, cleanup, shrinking, too short."""

from __future__ import annotations

import random

import pytest

from stackaudit.derive.forecast import forecast_full, theil_sen
from stackaudit.monitor import DAY_SECONDS

GIB = 1024**3
HOUR = 3600.0


def series(
    days: float, rate_per_day: float, start: float, every: float = 1800.0, noise: float = 0.0, seed: int = 1
) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    points = []
    t = 0.0
    while t <= days * DAY_SECONDS:
        points.append((t0 + t, start + rate_per_day * t / DAY_SECONDS + rng.gauss(0, noise)))
        t += every
    return points


def test_theil_sen_exact_line() -> None:
    slope, intercept = theil_sen([(0, 1), (1, 3), (2, 5), (3, 7)])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(1.0)


def test_linear_fill_gives_the_exact_days_left() -> None:
    # 50 GiB used of 100, +2 GiB/day for 5 days -> 60 GiB now, 40 GiB left -> 20 days.
    found = forecast_full(series(5, 2 * GIB, 50 * GIB), 100 * GIB)
    assert found is not None
    assert found.days_to_full == pytest.approx(20.0, rel=1e-6)
    assert found.rate_bytes_per_day == pytest.approx(2 * GIB, rel=1e-6)


def test_noisy_fill_stays_close_to_the_truth() -> None:
    found = forecast_full(series(7, 1 * GIB, 80 * GIB, noise=0.3 * GIB, seed=7), 100 * GIB)
    assert found is not None
    assert found.days_to_full == pytest.approx(13.0, rel=0.1)  # 87 GiB now, 13 GiB left at 1 GiB/day


def test_outliers_do_not_move_the_robust_fit() -> None:
    points = series(4, 1 * GIB, 40 * GIB)
    for i in range(5, len(points), 12):  # a burst of temporary files every 6 hours
        t, y = points[i]
        points[i] = (t, y + 30 * GIB)
    found = forecast_full(points, 100 * GIB)
    assert found is not None
    assert found.rate_bytes_per_day == pytest.approx(1 * GIB, rel=0.02)
    assert found.days_to_full == pytest.approx(56.0, rel=0.02)


def test_shrinking_disk_has_no_forecast() -> None:
    assert forecast_full(series(5, -1 * GIB, 70 * GIB), 100 * GIB) is None


def test_flat_disk_has_no_forecast() -> None:
    assert forecast_full(series(5, 0.0, 70 * GIB), 100 * GIB) is None


def test_too_few_or_too_short_history_has_no_forecast() -> None:
    assert forecast_full(series(5, GIB, 10 * GIB)[:3], 100 * GIB) is None
    short = series(0.02, 50 * GIB, 10 * GIB, every=300)  # half an hour of samples
    assert len(short) >= 4
    assert forecast_full(short, 100 * GIB) is None


def test_history_before_a_cleanup_is_ignored() -> None:
    before = series(3, 5 * GIB, 40 * GIB)  # fast fill, then a cleanup of ~20 GiB ...
    t_end = before[-1][0]
    after = [(t_end + HOUR * (i + 1), 35 * GIB + 0.5 * GIB * (i + 1) * HOUR / DAY_SECONDS) for i in range(48)]
    found = forecast_full(before + after, 100 * GIB)
    assert found is not None
    assert found.rate_bytes_per_day == pytest.approx(0.5 * GIB, rel=0.01)  # ... only the new rate counts


def test_samples_outside_the_window_are_ignored() -> None:
    old = series(30, 10 * GIB, 0.0)[:-1]
    now = old[-1][0]
    recent = [(now + HOUR * i, 10 * GIB) for i in range(1, 100)]  # flat for the last four days
    assert forecast_full(old + recent, 500 * GIB, window_days=3) is None


def test_already_full_is_zero_days() -> None:
    found = forecast_full(series(2, 10 * GIB, 95 * GIB), 100 * GIB)
    assert found is not None
    assert found.days_to_full == 0.0
