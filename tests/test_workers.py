"""The connection threads: calls run on named pool threads, a free thread is reused, the cap
holds, a failing call costs no thread, and shutdown runs what was queued and refuses the rest."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from safetunnel.sharing.workers import Workers


def test_calls_in_turn_reuse_one_named_thread() -> None:
    pool = Workers(8, "st-test-conn")
    names: list[str] = []
    try:
        for _ in range(20):
            done = threading.Event()

            def call(done: threading.Event = done) -> None:
                names.append(threading.current_thread().name)
                done.set()

            pool.submit(call)
            assert done.wait(5)
            _wait_until_idle(pool)  # counted idle just after the call returns
    finally:
        pool.shutdown()
    assert len(names) == 20
    assert all(name.startswith("st-test-conn_") for name in names)
    assert threading.current_thread().name not in names
    assert len(pool._threads) == 1


def _wait_until_idle(pool: Workers) -> None:
    for _ in range(500):
        with pool._lock:
            if pool._idle == 1:
                return
        time.sleep(0.01)
    raise AssertionError("the thread never came back idle")


def test_at_the_cap_a_call_waits_for_a_free_thread() -> None:
    pool = Workers(2, "st-test-conn")
    release = threading.Event()
    started = threading.Semaphore(0)
    ran: list[int] = []

    def blocking(n: int) -> None:
        started.release()
        release.wait(10)
        ran.append(n)

    try:
        pool.submit(lambda: blocking(1))
        pool.submit(lambda: blocking(2))
        assert started.acquire(timeout=5) and started.acquire(timeout=5)
        pool.submit(lambda: blocking(3))  # both threads are busy: this one queues
        assert len(pool._threads) == 2  # no third thread beyond the cap
        release.set()
        assert started.acquire(timeout=5)
    finally:
        release.set()
        pool.shutdown()
    assert sorted(ran) == [1, 2, 3]


def test_a_failing_call_is_logged_and_the_thread_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = Workers(1, "st-test-conn")
    done = threading.Event()

    def boom() -> None:
        raise ValueError("a bug")

    with caplog.at_level(logging.ERROR, logger="safetunnel.sharing.pump"):
        pool.submit(boom)
        pool.submit(done.set)
        assert done.wait(5)
        pool.shutdown()
    assert "a connection thread's call failed" in caplog.text
    assert len(pool._threads) == 1


def test_shutdown_runs_what_was_queued_then_refuses() -> None:
    pool = Workers(1, "st-test-conn")
    gate = threading.Event()
    ran: list[int] = []
    pool.submit(lambda: (gate.wait(10), ran.append(1)))
    pool.submit(lambda: ran.append(2))  # queued behind the first
    gate.set()
    pool.shutdown()
    assert ran == [1, 2]
    assert not any(thread.is_alive() for thread in pool._threads)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: ran.append(3))
    pool.shutdown()  # idempotent
    assert ran == [1, 2]
