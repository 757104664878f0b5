"""When a tunnel must stop or warn: times in, decisions out, no clock and no threads inside.

The tunnel's supervisor feeds :meth:`Deadlines.decide` the time from its injected clock, so the
TTL, the idle limit and the expiry warnings can be tested with scripted times instead of sleeps.
All times are seconds on one monotonic clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from safetunnel.durations import format_duration, format_remaining
from safetunnel.errors import UsageError
from safetunnel.sharing.reasons import StopReason

WARN_BEFORE = (300, 60)  # warn 5 min and 1 min before expiry
# Extending to exactly max_ttl must not fail because the clock moved a little since the start.
_EXTEND_SLACK = 0.5


@dataclass(frozen=True)
class ExpiryWarning:
    """A warning threshold was crossed; ``left`` is the time to expiry when it was noticed."""

    left: float

    @property
    def message(self) -> str:
        return f"expires in {format_remaining(math.ceil(self.left))}"


class Deadlines:
    """The TTL, the optional idle limit and the warnings of one tunnel started at ``start``."""

    def __init__(self, ttl: float, *, idle: float | None, max_ttl: float, start: float) -> None:
        self.start = start
        self.expires = start + ttl
        self.idle = idle
        self.max_ttl = max_ttl
        # A short TTL starts inside a warning window: the started block already says how long.
        self._warned = _due(ttl)

    def remaining(self, now: float) -> float:
        return max(0.0, self.expires - now)

    def decide(self, now: float, last_activity: float) -> StopReason | ExpiryWarning | None:
        """The stop reason if a limit is reached, else a warning not yet given, else None.

        A warning is given once: several thresholds crossed at once (a jump, a late tick) make
        one warning with the real time left.
        """
        left = self.expires - now
        if left <= 0:
            return StopReason.TTL
        if self.idle_reached(now, last_activity):
            return StopReason.IDLE
        crossed = _due(left) - self._warned
        if not crossed:
            return None
        self._warned |= crossed
        return ExpiryWarning(left)

    def idle_reached(self, now: float, last_activity: float) -> bool:
        """The idle limit (if any) has passed since ``last_activity``; changes nothing."""
        return self.idle is not None and self.idle > 0 and now - last_activity >= self.idle

    def extend(self, seconds: float, now: float) -> float:
        """Move the expiry by ``seconds`` and re-arm the warnings; refused past ``max_ttl``."""
        new_expiry = self.expires + seconds
        if new_expiry - self.start > self.max_ttl + _EXTEND_SLACK:
            raise UsageError(
                f"extending by {format_duration(int(seconds))} would run past max_ttl "
                f"({format_remaining(self.max_ttl)} from start)",
                hint="Start a new share, or raise max_ttl in config.toml.",
            )
        self.expires = new_expiry
        self._warned = _due(new_expiry - now)
        return new_expiry

    def pause(self, now: float, tick: float) -> float:
        """How long the supervisor may sleep: one tick, or less when the expiry is nearer."""
        return min(tick, max(0.01, self.expires - now))


def _due(left: float) -> set[int]:
    return {w for w in WARN_BEFORE if left <= w}
