"""The global failure budget and how the gate reports against it."""

from __future__ import annotations

import threading

import pytest
from gatekit import authed, make_policy, request, response, run

from safetunnel.gate import FailureBudget, GateError


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
    with pytest.raises(GateError):
        FailureBudget(**kwargs)


def test_gate_refusals_draw_on_the_shared_budget_with_growing_close_delay() -> None:
    budget = FailureBudget(per_minute=2, base_delay=0.5, max_delay=4.0)
    policy = make_policy(budget=budget)
    delays = [run([("remote", request("/"))], policy, start=float(i)).close.delay for i in range(5)]
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0]


def test_successes_and_plain_eof_cost_nothing() -> None:
    budget = FailureBudget(per_minute=0, max_failures=1)
    policy = make_policy(budget=budget)
    ok = run([("remote", authed("/")), ("service", response()), ("remote", b"")], policy)
    assert ok.close.allowed and ok.close.delay == 0.0
    assert run([("remote", b"")], policy).close.delay == 0.0
    assert budget.total_failures == 0


def test_exhausted_budget_is_reported_and_admits_nobody() -> None:
    budget = FailureBudget(max_failures=2)
    policy = make_policy(budget=budget)
    run([("remote", request("/"))], policy)
    first = run([("remote", b"SAFETUNNEL st_x\n")], policy)
    assert first.gate.exhausted and budget.exhausted
    late = run([("remote", authed("/"))], policy)
    assert late.close.reason == "budget-exhausted" and late.service == b""
    assert budget.total_failures == 2
