"""The threads that run the threaded pumps' directions: submit a call, a free thread runs it.

A pump hands work over twice per connection (on its first input, and when its parked remote side
has input again), the first time from paramiko's transport thread, which carries every
connection. ``concurrent.futures.ThreadPoolExecutor`` made a Future per call (a Condition and its
lock, set running and set done under it) and released a semaphore (another Condition) after
each one, all in Python, for a result nobody reads. Here a submit is a lock, a counter and a
``SimpleQueue.put``; a call's exception is logged, since nothing else would see it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("safetunnel.sharing.pump")


class Workers:
    """Up to ``max_workers`` daemon threads named ``<name>_<n>``, started as calls need them and
    kept until :meth:`shutdown`. Calls run in submission order as threads free up."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call that no queued call is promised to yet
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, call: Callable[[], object]) -> None:
        """Run ``call()`` on a pool thread; RuntimeError once the pool is shut down. Never waits
        for a call to finish (safe on the transport thread)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the connection threads are shut down")
            self._queue.put(call)
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max:
                # Started under the lock, so shutdown never sees a thread it cannot join.
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            # else every thread is busy: the call waits in the queue for the first one free

    def _work(self) -> None:
        while (call := self._queue.get()) is not None:
            try:
                call()
            except Exception:  # a bug in a call must not take a pool thread with it
                log.exception("a connection thread's call failed")
            del call  # drop the call's references before waiting for the next one
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Run what was submitted, then end every thread and wait for them; idempotent. Calls
        submitted meanwhile are refused (RuntimeError)."""
        with self._lock:
            threads, self._closed = ([] if self._closed else list(self._threads)), True
        for _ in threads:
            self._queue.put(None)  # after every queued call: each thread takes one and ends
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
