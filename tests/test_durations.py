from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safetunnel.durations import (
    DurationError,
    format_duration,
    format_remaining,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1d2h3m4s", 93784),
        (" 5M ", 300),
    ],
)
def test_parse_accepts(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "zero"),
        ("0s", "zero"),
        ("0h0m", "zero"),
        ("-5m", "negative"),
        ("banana", "cannot read"),
        ("", "empty"),
        ("30", "no unit"),
        ("5w", "unknown unit"),
        ("30m1h", "largest to smallest"),
        ("1m1m", "largest to smallest"),
        ("999999999999999d", "too long"),
        ("400d", "too long"),
        ("1.5h", "cannot read"),
        ("1h 30m", "cannot read"),
    ],
)
def test_parse_rejects_with_reason(text: str, fragment: str) -> None:
    with pytest.raises(DurationError, match=fragment):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=365 * 86400))
def test_format_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-3, "0s"), (45, "45s"), (1798.4, "29m 58s"), (17940, "4h 59m"), (97200, "1d 3h")],
)
def test_format_remaining(seconds: float, text: str) -> None:
    assert format_remaining(seconds) == text
