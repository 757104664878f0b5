"""The tunnel's clock decisions as a pure object: scripted times in, decisions out, no sleeps;
and the one thread that answers refusals later."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from safetunnel.errors import ConfigError
from safetunnel.sharing.later import Later
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.timers import Deadlines, ExpiryWarning

START = 1000.0


def deadlines(ttl: float = 600, idle: float | None = None, max_ttl: float = 3600) -> Deadlines:
    return Deadlines(ttl, idle=idle, max_ttl=max_ttl, start=START)


def test_warns_once_at_five_and_at_one_minute_then_stops_at_the_ttl() -> None:
    d = deadlines(ttl=600)
    assert d.decide(START + 1, START + 1) is None
    first = d.decide(START + 301, START + 301)
    assert first == ExpiryWarning(299) and first.message == "expires in 4m 59s"
    assert d.decide(START + 302, START + 302) is None  # once, not on every tick
    second = d.decide(START + 541, START + 541)
    assert isinstance(second, ExpiryWarning) and second.message == "expires in 59s"
    assert d.decide(START + 599.9, START + 599.9) is None
    assert d.decide(START + 600, START + 600) is StopReason.TTL


def test_a_jump_over_both_thresholds_gives_one_warning_with_the_real_time_left() -> None:
    d = deadlines(ttl=600)
    assert d.decide(START + 570, START) == ExpiryWarning(30)
    assert d.decide(START + 571, START) is None


def test_a_short_ttl_starts_inside_the_windows_and_never_warns() -> None:
    d = deadlines(ttl=45)
    assert [d.decide(START + t, START + t) for t in (0, 10, 44)] == [None, None, None]
    assert d.decide(START + 45, START) is StopReason.TTL


def test_idle_counts_from_the_last_activity_and_the_ttl_wins_a_tie() -> None:
    d = deadlines(ttl=600, idle=60)
    assert d.decide(START + 100, START + 41) is None
    assert d.decide(START + 100, START + 40) is StopReason.IDLE
    assert d.decide(START + 600, START + 540) is StopReason.TTL


def test_extend_moves_the_expiry_and_rearms_the_warnings() -> None:
    d = deadlines(ttl=600)
    assert isinstance(d.decide(START + 541, START), ExpiryWarning)
    assert d.decide(START + 541, START) is None
    assert d.extend(600, now=START + 541) == START + 1200
    assert d.remaining(START + 541) == 659
    assert d.decide(START + 600, START) is None  # not expired any more
    assert d.decide(START + 901, START) == ExpiryWarning(299)
    assert d.decide(START + 1141, START) == ExpiryWarning(59)


def test_extend_past_max_ttl_is_refused_and_changes_nothing() -> None:
    d = deadlines(ttl=600, max_ttl=900)
    with pytest.raises(ConfigError, match="max_ttl"):
        d.extend(301, now=START)
    assert d.expires == START + 600
    assert d.extend(300, now=START) == START + 900  # exactly max_ttl is allowed


def test_the_supervisor_sleeps_a_tick_or_until_the_expiry() -> None:
    d = deadlines(ttl=600)
    assert d.pause(START, tick=0.5) == 0.5
    assert d.pause(START + 599.8, tick=0.5) == pytest.approx(0.2)
    assert d.pause(START + 700, tick=0.5) == 0.01


# -- the scheduler of delayed answers ------------------------------------------------------------


def test_later_runs_calls_on_its_own_thread_and_close_runs_what_is_left() -> None:
    later = Later(cap=4, name="test-later")
    ran: list[tuple[str, bool]] = []
    done = threading.Event()

    def record(name: str) -> Callable[[], None]:
        def call() -> None:
            ran.append((name, threading.current_thread() is threading.main_thread()))
            if name == "soon":
                done.set()

        return call

    later.call_later(3600.0, record("an hour"))
    later.call_later(0.0, record("soon"))
    assert done.wait(5)
    assert ran == [("soon", False)]  # never on the caller's thread
    later.close()
    assert ran == [("soon", False), ("an hour", True)]  # close answers the rest at once
    later.call_later(3600.0, record("after close"))
    assert ran[-1] == ("after close", True)


def test_past_its_cap_the_call_due_first_runs_now_but_not_on_the_caller() -> None:
    later = Later(cap=2, name="test-later")
    first = threading.Event()
    callers: list[bool] = []

    def earliest() -> None:
        callers.append(threading.current_thread() is threading.main_thread())
        first.set()

    later.call_later(3000.0, earliest)
    later.call_later(3600.0, lambda: None)
    later.call_later(3600.0, lambda: None)  # one over the cap: the earliest goes now
    assert first.wait(5)
    assert callers == [False]
    assert later.waiting == 2
    later.close()


def test_past_its_cap_defer_declines_so_the_waiting_answers_stay_bounded() -> None:
    """Each waiting answer keeps a refused channel open, and a channel nobody reads buffers up to
    its SSH window (2 MiB). Queuing the calls past the cap for the one busy thread let a junk
    flood grow the share with the flood (250 refused connections on the built-in gateway: 40 to
    408 MiB); past the cap the caller must answer itself."""
    later = Later(cap=2, name="test-later")
    busy, release = threading.Event(), threading.Event()

    def block() -> None:
        busy.set()
        release.wait(5)

    assert later.defer(0.0, block)
    assert busy.wait(5)  # the thread is busy with it: nothing else runs meanwhile
    taken = [later.defer(3600.0, lambda: None) for _ in range(10)]
    assert taken == [True, True] + [False] * 8
    assert later.waiting == 2
    release.set()
    later.close()
    assert not later.defer(0.0, lambda: None)  # closed: the caller answers at once
