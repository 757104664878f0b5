"""Keepalive watchdog: paramiko's set_keepalive only sends, it never notices a dead peer, so a
share over a dropped network would otherwise look up until its TTL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paramiko

from safetunnel.ssh._transport import RequestAborted, RequestTimeout

log = logging.getLogger("safetunnel.ssh")
Ping = Callable[[float, threading.Event], None]


class KeepaliveWatchdog:
    """One named thread: every ``interval`` s send a ping that must be answered within what is
    left of ``3 * interval`` since the last reply; otherwise call ``on_lost()`` once and end.

    One thread with a timed request replaces a pinger blocked in ``global_request(wait=True)``
    plus a monitor: nothing ever blocks without a deadline, so ``stop()`` joins promptly.
    """

    def __init__(
        self,
        ping: Ping,
        is_active: Callable[[], bool],
        interval: float,
        on_lost: Callable[[], None],
        name: str,
    ) -> None:
        if interval <= 0:
            raise ValueError("keepalive interval must be positive")
        self._ping, self._is_active, self._interval = ping, is_active, interval
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self._thread.start()

    def _alive(self, budget: float) -> bool:
        if not self._is_active():
            return False
        try:
            self._ping(budget, self._stop)
        except RequestAborted:
            return self._stop.is_set()  # stopping is not a loss; a closed transport is
        except (RequestTimeout, paramiko.SSHException, EOFError, OSError):
            # paramiko's own errors too (a key exchange that timed out): a watchdog that died
            # of one would leave the share up with nobody watching.
            return False
        return True

    def _run(self) -> None:
        last_reply = time.monotonic()
        while not self._stop.wait(self._interval):
            budget = max(last_reply + 3 * self._interval - time.monotonic(), self._interval / 2)
            if self._alive(budget):
                last_reply = time.monotonic()
                continue
            if not self._stop.is_set():
                log.warning(
                    "SSH connection lost: no keepalive reply for %.1f s",
                    time.monotonic() - last_reply,
                )
                try:
                    self._on_lost()
                except Exception:
                    log.exception("on_lost callback failed")
            return

    def stop(self, timeout: float = 5.0) -> None:
        """Idempotent; does not join when called from on_lost on the watchdog thread itself."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
