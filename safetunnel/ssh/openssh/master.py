"""The OpenSSH control master: one ``ssh -M -N`` process per share.

The master authenticates once and holds the connection; the forward is added later over its
control socket, so the user confirms a share while nothing is reachable yet. The master's
stderr (``LogLevel=DEBUG1``) is read by a thread into a bounded buffer: it names the host key
the master accepted and carries the server's debug messages, among them the one that says
``GatewayPorts`` widened a bind. A second thread waits for the process: its exit is the loss
of the SSH connection (ServerAliveInterval/CountMax make OpenSSH exit on a silent peer).

Threads: ``safetunnel-ssh-stderr`` and ``safetunnel-ssh-wait``; ``close()`` joins both.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from safetunnel.errors import AuthFailed, HostKeyChanged, HostKeyUnknown, SSHError

SSH = "ssh"
log = logging.getLogger("safetunnel.ssh.openssh")
_PR_SET_PDEATHSIG = 1
# How long the stderr reader waits after a read, and the pipe size it asks for: at thousands of
# connections a second, about eight DEBUG1 lines each, a gathering is some tens of KiB.
_GATHER_SECONDS = 0.01
_PIPE_BYTES = 1 << 20
_KEEP_LINES = 400
# Once the forward is up nothing waits for a line: only the last ones matter, should the master
# exit. Each wake-up of the reader takes the GIL from the relay loop, so it then gathers for
# longer, as long as the pipe holds what a busy master writes meanwhile (~8 MB/s at 10,000
# connections a second).
_SETTLED_GATHER_SECONDS = 0.1
_BUSIEST_BYTES_PER_SECOND = 8_000_000


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGTERM the master when the share process dies,
    even by ``kill -9``: an orphaned master would keep the remote port open for nobody.

    The signal follows the *thread* that started the child, so the master must be started from
    a thread that lives as long as the share (the flow's own thread does). libc is loaded
    here, before the fork: the child of a threaded process must not load libraries.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def arm() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm


class MasterLog:
    """The master's stderr, last lines only; waiters can block until a line appears."""

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=_KEEP_LINES)
        self._seen = 0  # lines ever read, so callers can ask for "after line N"
        self._changed = threading.Condition()
        self._ended = False
        self._watchers: list[tuple[bytes, Callable[[str], None]]] = []

    def on_line(self, text: str, callback: Callable[[str], None]) -> None:
        """Call ``callback`` (on the reader thread) with each line read from now on that holds
        ``text``."""
        self._watchers.append((text.encode(), callback))

    def add(self, line: str) -> None:
        with self._changed:
            self._lines.append(line)
            self._seen += 1
            self._changed.notify_all()

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


class Master:
    """A running ``ssh -M -S CTL -N …`` and its control socket."""

    def __init__(self, argv: Sequence[str], control_path: Path, env: dict[str, str]) -> None:
        self.control_path = control_path
        self.log = MasterLog()
        self._on_exit: Callable[[], None] | None = None
        self._closing = False
        self._settled = False  # the forward is up: no one waits for a line any more
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            # Its own session: a Ctrl-C meant for the share must not kill the master first.
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self._reader = threading.Thread(target=self._read, name="safetunnel-ssh-stderr")
        self._waiter = threading.Thread(target=self._wait, name="safetunnel-ssh-wait")
        self._reader.start()
        self._waiter.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self) -> None:
        """Whatever the pipe holds at once, split into lines: one read and one lock per burst
        rather than per line (a line cut by a read waits for its end)."""
        assert self._process.stderr is not None
        with self._process.stderr as stream:
            fd = stream.fileno()
            settled_gather = _widen_pipe(fd)
            partial = b""
            while chunk := os.read(fd, _PIPE_BYTES):
                *lines, partial = (partial + chunk).split(b"\n")
                self.log.add_raw(lines)
                # Let a burst gather: each forwarded connection writes its lines in several
                # writes, and each read here woke this thread and took the GIL from the pumps
                # (measured: about four reads per connection, and fewer connections a second).
                time.sleep(settled_gather if self._settled else _GATHER_SECONDS)
            if partial:
                self.log.add(_text(partial))
        self.log.end()

    def settle(self) -> None:
        """The forward is up and checked: from now on the log only keeps the master's last
        words, so the reader may gather for longer between reads."""
        self._settled = True

    def _wait(self) -> None:
        self._process.wait()
        callback = self._on_exit
        if callback is not None and not self._closing:
            callback()

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once (on the waiter thread) if the master exits before close()."""
        self._on_exit = callback
        if not self.alive():
            callback()

    def alive(self) -> bool:
        return self._process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Block until the master is authenticated and its control socket answers.

        Raises HostKeyUnknown/HostKeyChanged (4), AuthFailed (5) or SSHError from what the
        master said before it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self._reader.join(5)
                raise failure_from(self.log.tail(), self._process.returncode)
            if self.control_path.exists() and self.control("check").returncode == 0:
                return
            time.sleep(0.02)
        raise SSHError(f"ssh did not finish logging in within {timeout:.0f}s")

    def control(self, operation: str, *args: str, timeout: float = 10.0) -> Result:
        """``ssh -S CTL -O operation ARGS``: a request to the running master."""
        argv = [SSH, "-F", "/dev/null", "-S", str(self.control_path), "-O", operation, *args]
        try:
            done = subprocess.run(
                [*argv, "safetunnel"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return Result(255, "", f"ssh -O {operation} got no answer within {timeout:.0f}s")
        return Result(done.returncode, done.stdout, done.stderr)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the master (the server then drops its listener), join the threads. Idempotent."""
        self._closing = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        for thread in (self._reader, self._waiter):
            if thread is not threading.current_thread():
                thread.join(timeout)
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()


class Result:
    """What one ``ssh -O`` request returned."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def failure_from(lines: Sequence[str], returncode: int | None) -> Exception:
    """The error a master's last words stand for."""
    text = "\n".join(lines)
    said = "; ".join(line for line in lines if not line.startswith("debug")) or "no message"
    if "IDENTIFICATION HAS CHANGED" in text or "has changed and you have requested" in text:
        return HostKeyChanged(
            f"HOST KEY CHANGED (ssh said: {said}). Someone may be intercepting the connection.",
            hint="safetunnel will not connect. Verify the new key with the host's administrator.",
        )
    if "Host key verification failed" in text or "No matching host key" in text:
        return HostKeyUnknown(
            f"The host key is not known or could not be verified (ssh said: {said}).",
            hint="Check the fingerprint with the host's administrator, then run "
            "`safetunnel hosts trust HOST`.",
        )
    if "Permission denied" in text or "Too many authentication failures" in text:
        return AuthFailed(
            f"SSH authentication failed (ssh said: {said}).",
            hint="Check the user and key (--identity), or store a passphrase with "
            "`safetunnel creds set HOST`.",
        )
    return SSHError(f"ssh exited with status {returncode} before it was ready: {said}")
