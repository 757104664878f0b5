"""The reconnect's worker: calls run in order on one daemon thread, each with its own Future,
and the thread never holds the program open."""

from __future__ import annotations

import threading

import pytest

from safetunnel.sharing.worker import Worker


def test_calls_run_in_order_and_hand_back_results_and_errors() -> None:
    worker = Worker("test-worker")
    seen: list[int] = []
    first = worker.submit(seen.append, 1)
    failing = worker.submit(int, "not a number")
    last = worker.submit(lambda: seen.append(2) or len(seen))
    assert first.result(5) is None
    with pytest.raises(ValueError):
        failing.result(5)
    assert last.result(5) == 2
    assert seen == [1, 2]
    worker.shutdown()


def test_the_thread_is_a_daemon_and_ends_after_shutdown() -> None:
    worker = Worker("test-worker-end")
    release = threading.Event()
    busy = worker.submit(release.wait, 5)
    threads = [t for t in threading.enumerate() if t.name == "test-worker-end"]
    assert len(threads) == 1 and threads[0].daemon  # never joined at exit
    worker.shutdown()
    late = worker.submit(int, "1")
    release.set()
    assert busy.result(5) is True
    threads[0].join(5)
    assert not threads[0].is_alive()
    assert late.cancelled()
