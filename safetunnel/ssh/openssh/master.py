"""The OpenSSH control master: one ``ssh -M -N`` process per share.

The master authenticates once and holds the connection; the forward is added later over its
control socket, so the user confirms a share while nothing is reachable yet. The master's
stderr (``LogLevel=DEBUG1``) is read by a thread into a :class:`MasterLog`: it names the host key
the master accepted and carries the server's debug messages, among them the one that says
``GatewayPorts`` widened a bind. A second thread waits for the process: its exit is the loss
of the SSH connection (ServerAliveInterval/CountMax make OpenSSH exit on a silent peer).

Threads: ``safetunnel-ssh-stderr`` and ``safetunnel-ssh-wait``; ``close()`` joins both.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from safetunnel.errors import AuthFailed, HostKeyChanged, HostKeyUnknown, SSHError
from safetunnel.ssh.openssh.masterlog import MasterLog, read_lines

SSH = "ssh"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGTERM the master when the share process dies,
    even by ``kill -9``: an orphaned master would keep the remote port open for nobody. (The
    askpass helper arms itself with it too, against its ssh, while it waits at the terminal.)

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
            preexec_fn=die_with_parent(os.getpid()),
        )
        # A daemon, though close() joins it: a helper of ssh's that outlived it (which close()
        # kills) would keep the pipe open, and the share must still be able to exit.
        self._reader = threading.Thread(
            target=self._read, name="safetunnel-ssh-stderr", daemon=True
        )
        self._waiter = threading.Thread(target=self._wait, name="safetunnel-ssh-wait")
        self._reader.start()
        self._waiter.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self) -> None:
        assert self._process.stderr is not None
        with self._process.stderr as stream:
            read_lines(stream.fileno(), self.log, lambda: self._settled)

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

    def wait_ready(self, timeout: float, asking: Callable[[], bool] | None = None) -> None:
        """Block until the master is authenticated and its control socket answers, for up to
        ``timeout`` seconds, not counting the time while ``asking()`` (someone is being asked
        for a secret, as the paramiko engine waits at its prompt).

        Raises HostKeyUnknown/HostKeyChanged (4), AuthFailed (5) or SSHError from what the
        master said before it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if asking is not None and asking():
                deadline = time.monotonic() + timeout
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
        """Stop the master (the server then drops its listener), then whatever it started that
        is still running (an askpass helper waiting at the terminal, a ProxyCommand), and join
        the threads. Idempotent."""
        self._closing = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        # The master leads its own session: the group holds its helpers, which kept its stderr
        # open (the reader never saw the end) and, asking on the terminal, outlived the share.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGTERM)
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
