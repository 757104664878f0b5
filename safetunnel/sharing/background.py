"""``share --background``: the foreground asks, a detached process shares.

The foreground runs the whole conversation (pre-flight, host-key trust, secrets, confirmation)
and then starts ``safetunnel share … --yes --background-child FD`` in a new session with its
output going to a 0600 log file and what the user typed (a passphrase, a password) on its stdin
pipe, so it logs in without asking. The child reports its ``started`` event (token included)
through the pipe FD only, never through the log, and the foreground returns once it has it, or
fails with the child's own error and exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetunnel import paths
from safetunnel.errors import SafetunnelError
from safetunnel.fsutil import ensure_private_dir
from safetunnel.secrets import handoff
from safetunnel.secrets.names import SecretName

START_TIMEOUT = 60.0
STOP_WAIT = 15.0


class BackgroundFailed(SafetunnelError):
    """The detached share could not start; carries the child's own exit code and message."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


def new_log_path() -> Path:
    logs = ensure_private_dir(paths.state_dir() / "logs")
    return logs / f"share-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"


def spawn(
    args: list[str],
    log_path: Path,
    secrets: Mapping[SecretName, str],
    timeout: float = START_TIMEOUT,
) -> dict[str, Any]:
    """Start the detached share and return its ``started`` event, or raise BackgroundFailed.

    ``secrets`` (what the user typed here) go down the child's stdin pipe, then it is closed:
    never argv, the environment or a file."""
    read_fd, write_fd = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "safetunnel", *args, "--background-child", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=log_fd,
            stderr=log_fd,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    finally:
        os.close(write_fd)
        os.close(log_fd)
    try:
        _hand_over(child, secrets)
        data = _read_all(read_fd, timeout)
    except BaseException:
        # Ctrl-C before the share said it started: nobody would ever see its token or how to
        # stop it, and it would serve its whole TTL.
        _stop(child)
        raise
    finally:
        os.close(read_fd)
    for line in data.decode(errors="replace").splitlines():
        event = json.loads(line)
        if event.get("event") == "started":
            return dict(event)
    raise _failure(child, log_path)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End the detached share and wait for its teardown (which ends its ``ssh``); if that
    hangs, SIGKILL its whole process group (it leads a session of its own)."""
    child.terminate()
    try:
        child.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _hand_over(child: subprocess.Popen[bytes], secrets: Mapping[SecretName, str]) -> None:
    assert child.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # a child that died says why in its log
        child.stdin.write(handoff.dump(secrets))
    with contextlib.suppress(BrokenPipeError):
        child.stdin.close()


def _read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(child: subprocess.Popen[bytes], log_path: Path) -> BackgroundFailed:
    try:
        code = child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.terminate()
        code = child.wait(timeout=15)
        return BackgroundFailed(
            "the background share did not report within the time limit",
            f"See its log: {log_path}",
            1,
        )
    message, hint = "the background share exited before it was up", f"See its log: {log_path}"
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("Error: "):
            message = line.removeprefix("Error: ")
        elif line.startswith("hint: "):
            hint = line.removeprefix("hint: ") + f" (log: {log_path})"
    return BackgroundFailed(message, hint, code or 1)


def child_args(argv: list[str]) -> list[str]:
    """The foreground's own arguments, minus --background, plus --yes (it already asked)."""
    args = [arg for arg in argv if arg != "--background"]
    if "--yes" not in args and "-y" not in args:
        args.append("--yes")
    return args
