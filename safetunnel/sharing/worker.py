"""One daemon thread that runs the calls handed to it, in order, each with its own Future.

Not ``concurrent.futures.ThreadPoolExecutor``: Python joins an executor's threads when the
program ends, so a reconnect attempt still waiting on a silent server (a login can take 30 s)
kept a stopped share's process alive after its teardown, until ``kill`` fell back to SIGTERM.
A daemon thread ends with the program, and an ``ssh`` it started ends with it (PDEATHSIG).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Worker:
    """Started at construction; ``shutdown()`` lets it end after the call it runs."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((future, call, args))
        return future

    def shutdown(self) -> None:
        """The thread ends after the calls already handed over (the one under way finishes on
        its own: nothing waits for it); calls handed over later are cancelled."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as err:  # the caller decides what it means
                future.set_exception(err)
        self._cancel_rest()

    def _cancel_rest(self) -> None:
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()
