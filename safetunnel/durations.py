"""Durations such as ``90s``, ``30m``, ``1h30m`` or ``2d``, and human-readable remaining time.

Pure: no clock in here. Parsing is strict on purpose: a TTL is a promise about when something
stops being reachable, so ``30`` (which unit?), ``0`` and ``-5m`` are refused rather than guessed.
"""

from __future__ import annotations

import re

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_ORDER = "dhms"
_PART = re.compile(r"(\d+)([a-zA-Z]+)")
# Anything above this is certainly a typo; it also keeps datetime arithmetic in range.
MAX_SECONDS = 365 * 86_400


class DurationError(ValueError):
    """A duration string could not be parsed; the message says why."""


def parse_duration(text: str) -> int:
    """Parse ``text`` into a positive number of whole seconds.

    Accepts one or more ``<number><unit>`` parts with units d, h, m, s in that order, each at most
    once, e.g. ``90s``, ``30m``, ``1h30m``, ``2d``. Raises :class:`DurationError` otherwise.
    """
    raw = text.strip().lower()
    if not raw:
        raise DurationError("empty duration; use e.g. 90s, 30m, 1h30m or 2d")
    if raw.startswith("-"):
        raise DurationError(f"{text!r} is negative; a duration must be positive")
    if raw.isdigit() and int(raw) == 0:
        raise DurationError(f"{text!r} is zero; a duration must be positive, e.g. 30m")
    if raw.isdigit():
        raise DurationError(f"{text!r} has no unit; write e.g. {raw}m or {raw}s")
    pos = 0
    total = 0
    last = -1
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit not in _UNITS:
            raise DurationError(f"unknown unit {unit!r} in {text!r}; use d, h, m or s")
        rank = _ORDER.index(unit)
        if rank <= last:
            raise DurationError(f"{text!r}: units must go from largest to smallest, each once")
        last = rank
        if len(number) > 12:
            raise DurationError(f"{text!r} is too long (the maximum is 365d)")
        total += int(number) * _UNITS[unit]
        pos = match.end()
    if pos != len(raw):
        raise DurationError(f"cannot read {text!r} as a duration; use e.g. 90s, 30m, 1h30m or 2d")
    if total <= 0:
        raise DurationError(f"{text!r} is zero; a duration must be positive")
    if total > MAX_SECONDS:
        raise DurationError(f"{text!r} is too long (the maximum is 365d)")
    return total


def format_duration(seconds: float) -> str:
    """Compact form that :func:`parse_duration` reads back: ``1h30m``, ``45s``, ``2d3h``."""
    remaining = max(0, int(seconds))
    if remaining == 0:
        return "0s"
    parts = []
    for unit in _ORDER:
        size = _UNITS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_remaining(seconds: float) -> str:
    """Human form of time left, rounded to what a person cares about.

    ``4h 59m``, ``29m 58s``, ``45s``; over a day, ``1d 3h``. Never negative.
    """
    secs = max(0, int(seconds + 0.5))
    days, rest = divmod(secs, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
