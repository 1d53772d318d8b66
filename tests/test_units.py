"""The one size parser and the one duration parser every layer uses (stackaudit.units)."""

from __future__ import annotations

import pytest

from stackaudit.facts.compose import parse_bytes
from stackaudit.facts.compose import parse_duration as compose_duration
from stackaudit.monitor import parse_duration as interval
from stackaudit.units import parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800.0), ("1.5h", 5400.0), ("1m30s", 90.0), ("500ms", 0.5), ("7d", 604800.0),
    ("2w", 1209600.0), ("90", 90.0), (45, 45.0), ("1h30m", 5400.0)])
def test_durations_people_and_compose_write(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["x", "30 minutes", "1m30", "", "m"])
def test_a_non_duration_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_compose_and_monitor_read_durations_through_the_one_parser() -> None:
    assert compose_duration("1m30s") == 90.0 and compose_duration("soon") is None
    assert compose_duration(None) is None
    assert interval("30m") == 1800.0
    with pytest.raises(ValueError, match="positive"):
        interval("0s")


@pytest.mark.parametrize(("text", "size"), [("512m", 512 * 2**20), ("1g", 2**30), ("23GiB", 23 * 2**30),
                                            ("1.5g", int(1.5 * 2**30)), ("1024", 1024)])
def test_sizes_as_docker_reads_them(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert parse_bytes(text) == size


def test_compose_sizes_that_are_not_sizes_are_none() -> None:
    assert parse_bytes("lots") is None and parse_bytes(None) is None and parse_bytes(True) is None
