"""The control master's stderr: read in gatherings, its last lines kept for whoever waits on
them (the host key the master accepted, the server's word on a forward, the master's last words
before it exits), and lines of interest passed to their watchers."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable

log = logging.getLogger("safetunnel.ssh.openssh")

# How long the stderr reader waits after a read, and the pipe size it asks for: at thousands of
# connections a second, about eight DEBUG1 lines each, a gathering is some tens of KiB.
_GATHER_SECONDS = 0.01
_PIPE_BYTES = 1 << 20
_KEEP_LINES = 400
HOST_KEY_LINE = "Server host key:"  # ssh's DEBUG1 line for the key it accepted
SERVER_KEY = re.compile(HOST_KEY_LINE + r" (\S+) (SHA256:\S+)")  # its key type and fingerprint
# Once the forward is up nothing waits for a line: only the last ones matter, should the master
# exit. Each wake-up of the reader takes the GIL from the relay loop, so it then gathers for
# longer, as long as the pipe holds what a busy master writes meanwhile (~8 MB/s at 10,000
# connections a second).
_SETTLED_GATHER_SECONDS = 0.1
_BUSIEST_BYTES_PER_SECOND = 8_000_000


class MasterLog:
    """The master's stderr, last lines only; waiters can block until a line appears."""

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=_KEEP_LINES)
        self._seen = 0  # lines ever read, so callers can ask for "after line N"
        self._changed = threading.Condition()
        self._ended = False
        self._watchers: list[tuple[bytes, Callable[[str], None]]] = []
        # Kept whatever follows them: a server's banner (printed line by line after the key
        # exchange) can run past the lines kept, and the key must still be checked.
        self._host_keys: list[str] = []
        self.on_line(HOST_KEY_LINE, self._host_keys.append)

    def host_keys(self) -> list[str]:
        """Every line read that names a host key ssh accepted, in order (a hop's come first)."""
        return list(self._host_keys)

    def on_line(self, text: str, callback: Callable[[str], None]) -> None:
        """Call ``callback`` (on the reader thread) with each line read from now on that holds
        ``text``."""
        self._watchers.append((text.encode(), callback))

    def add_raw(self, lines: list[bytes]) -> None:
        """Several lines under one lock and one wake-up: at DEBUG1 the master writes about
        eight lines per forwarded connection, all of them read here. Only the lines kept are
        decoded."""
        if not lines:
            return
        kept = [_text(line) for line in lines[-_KEEP_LINES:]]
        with self._changed:
            self._lines.extend(kept)
            self._seen += len(lines)
            self._changed.notify_all()
        for pattern, callback in self._watchers:
            for line in lines:
                if pattern in line:
                    _tell(callback, _text(line))

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def seen(self) -> int:
        with self._changed:
            return self._seen

    def since(self, seen: int) -> list[str]:
        """The lines read after the first ``seen`` (those still kept)."""
        with self._changed:
            return self._since(seen)

    def _since(self, seen: int) -> list[str]:
        fresh = self._seen - seen
        return list(self._lines)[-fresh:] if fresh > 0 else []

    def wait_for(self, text: str, seen: int, timeout: float) -> bool:
        """Block until a line after ``seen`` contains ``text``; False at EOF or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self._since(seen)):
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def tail(self, count: int = 20) -> list[str]:
        with self._changed:
            return list(self._lines)[-count:]


def _widen_pipe(fd: int) -> float:
    """Room for what the master writes while the reader gathers a burst (a full pipe would
    stall the master, and every forward with it); the default pipe already holds well over
    one gathering's worth, so a refusal changes nothing. Returns how long the reader may then
    gather once the forward is up."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no pipe sizes
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        room = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        return max(_GATHER_SECONDS, min(_SETTLED_GATHER_SECONDS, room / _BUSIEST_BYTES_PER_SECOND))
    return _GATHER_SECONDS


def _tell(callback: Callable[[str], None], line: str) -> None:
    """A watcher's failure must not end the reader: a pipe nobody reads would stall the master,
    and every connection with it."""
    try:
        callback(line)
    except Exception:
        log.warning("a watcher of the ssh master's log failed", exc_info=True)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def read_lines(fd: int, into: MasterLog, settled: Callable[[], bool]) -> None:
    """Read the master's stderr into ``into`` until EOF: whatever the pipe holds at once, split
    into lines (a line cut by a read waits for its end), then a pause while more gathers."""
    settled_gather = _widen_pipe(fd)
    partial = b""
    while chunk := os.read(fd, _PIPE_BYTES):
        *lines, partial = (partial + chunk).split(b"\n")
        into.add_raw(lines)
        # Let a burst gather: each forwarded connection writes its lines in several writes,
        # and each read here woke this thread and took the GIL from the pumps (measured: about
        # four reads per connection, and fewer connections a second).
        time.sleep(settled_gather if settled() else _GATHER_SECONDS)
    if partial:
        into.add_raw([partial])
    into.end()
