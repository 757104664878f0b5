"""Refusals: the gate reports them per connection; the tunnel's failure budget prices them."""

from __future__ import annotations

import threading

import pytest
from gatekit import authed, request, response, run

from safetunnel.sharing.budget import FailureBudget


def test_no_delay_up_to_k_failures_a_minute_then_growing_delays() -> None:
    budget = FailureBudget(per_minute=3, base_delay=0.25, max_delay=1.0)
    delays = [budget.record_failure(10.0 + i) for i in range(7)]
    assert delays == [0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0]


def test_failures_older_than_a_minute_stop_counting() -> None:
    budget = FailureBudget(per_minute=2)
    for t in (0.0, 1.0, 2.0):
        budget.record_failure(t)
    assert budget.record_failure(61.5) == 0.0
    assert budget.total_failures == 4


def test_exhausted_after_max_failures_in_total() -> None:
    budget = FailureBudget(per_minute=100, max_failures=3)
    for t in (0.0, 100.0):
        budget.record_failure(t)
    assert not budget.exhausted
    budget.record_failure(500.0)
    assert budget.exhausted


def test_flood_keeps_delay_capped_and_memory_bounded() -> None:
    budget = FailureBudget(per_minute=1, max_delay=5.0)
    assert max(budget.record_failure(1.0) for _ in range(10_000)) == 5.0


def test_budget_is_thread_safe() -> None:
    budget = FailureBudget(per_minute=10**6)

    def hammer() -> None:
        for _ in range(2000):
            budget.record_failure(1.0)

    threads = [threading.Thread(target=hammer, name=f"hammer-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert budget.total_failures == 8000


@pytest.mark.parametrize("kwargs", [{"per_minute": -1}, {"max_failures": 0}, {"base_delay": -1}])
def test_budget_rejects_nonsense_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        FailureBudget(**kwargs)


@pytest.mark.parametrize(
    "script",
    [
        [("remote", request("/"))],  # no token
        [("remote", b"SAFETUNNEL st_x\n")],  # wrong preamble
        [("remote", b"\x16\x03\x01 tls hello")],  # a protocol not on offer
        [("remote", b"GET / HT"), ("remote", b"")],  # a head cut short
        [("remote", b"GET / HT"), ("time", 11.0)],  # a head too slow
    ],
)
def test_refusals_are_reported_as_refused(script: list[tuple[str, bytes | float]]) -> None:
    close = run(script).close
    assert close.refused and not close.allowed


def test_successes_and_plain_eof_are_not_refusals() -> None:
    ok = run([("remote", authed("/")), ("service", response()), ("remote", b"")])
    assert ok.close.allowed and not ok.close.refused
    assert not run([("remote", b"")]).close.refused
    idle = run([("remote", authed("/")), ("service", response()), ("time", 30.0)])
    assert idle.close.reason == "idle" and not idle.close.refused


def test_the_gate_keeps_no_count_across_connections() -> None:
    """A gate only knows its own connection: the hundredth refusal looks like the first."""
    closes = [run([("remote", request("/"))], start=float(i)).close for i in range(100)]
    assert len(set(closes)) == 1
