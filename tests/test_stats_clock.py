"""Stats keep time on the tunnel's clock, so "idle since" compares with the tunnel's ``now``."""

from __future__ import annotations

from safetunnel.sharing.stats import ConnCounters, TunnelStats


class ScriptedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_idle_since_follows_the_injected_clock() -> None:
    clock = ScriptedClock(1000.0)
    stats = TunnelStats(clock)
    assert stats.idle_since() == 1000.0
    conn = stats.counters("127.0.0.1:1")
    clock.now = 1010.0
    stats.opened(conn)
    conn.add_in(5)
    assert stats.idle_since() == 1000.0  # no token shown yet: no activity
    clock.now = 1020.0
    stats.authorized(conn)
    assert stats.idle_since() == 1020.0
    clock.now = 1030.0
    conn.add_in(5)
    assert stats.idle_since() == 1030.0  # an authorized connection's bytes count
    clock.now = 1050.0
    conn.add_out(7)
    clock.now = 1060.0
    conn.add_in(0)  # an EOF is no activity
    clock.now = 1100.0
    summary = stats.finished(conn, True, "eof")
    assert summary["duration"] == 100.0  # opened at 1000.0, finished at 1100.0
    assert stats.idle_since() == 1050.0  # its last byte, not its close


def test_a_refused_connection_is_no_activity() -> None:
    clock = ScriptedClock(1000.0)
    stats = TunnelStats(clock)
    conn = stats.counters("127.0.0.1:1")
    clock.now = 1010.0
    stats.opened(conn)
    conn.add_in(300)
    clock.now = 1020.0
    stats.finished(conn, False, "unauthorized")
    assert stats.idle_since() == 1000.0


def test_counters_made_by_the_stats_share_its_clock() -> None:
    clock = ScriptedClock(5.0)
    conn = TunnelStats(clock).counters("o")
    assert (conn.opened, conn.last_activity) == (5.0, 5.0)
    clock.now = 6.5
    conn.add_in(1)
    assert conn.last_activity == 6.5


def test_counters_default_to_the_monotonic_clock() -> None:
    conn = ConnCounters(origin="o")
    assert conn.opened == conn.last_activity > 0.0
