"""Keeps a running tunnel's record fresh (an optional helper of a running share).

``list`` and ``status`` read counters from the record, so a tunnel rewrites it every few seconds
(and at once after anything a user would notice, such as an extend). The first write happens in
:meth:`RecordPublisher.start`, so a tunnel is listed as soon as it is up; :meth:`close` removes
the record and the control socket path, which is the last thing teardown does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from safetunnel.errors import SafetunnelError
from safetunnel.registry.records import Registry, TunnelRecord


class RecordPublisher:
    """Rewrites ``snapshot()`` to the registry every ``interval`` seconds on a named thread."""

    def __init__(
        self, registry: Registry, snapshot: Callable[[], TunnelRecord], interval: float = 2.0
    ) -> None:
        self.registry = registry
        self.snapshot = snapshot
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one writer at a time: publish_now() races the thread
        self._id: str | None = None
        self.last_error: SafetunnelError | OSError | None = None

    def start(self) -> None:
        """Write the record once (errors propagate: a tunnel that cannot be listed must not run)."""
        record = self.snapshot()
        self._id = record.id
        self.registry.write(record)
        self._thread = threading.Thread(target=self._run, name=f"safetunnel-record-{record.id}")
        self._thread.start()

    def publish_now(self) -> None:
        """Write the current snapshot immediately (after extend, for instance)."""
        with self._lock:
            if self._stop.is_set():
                return  # never resurrect a record that close() removed
            self.registry.write(self.snapshot())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish_now()
            except (SafetunnelError, OSError) as err:
                # A full disk must not kill a live share; the next tick retries.
                self.last_error = err

    def close(self) -> None:
        """Stop refreshing, join the thread, remove the record and socket. Idempotent."""
        with self._lock:
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 5.0)
        if self._id is not None:
            with contextlib.suppress(OSError):
                self.registry.remove(self._id)
