"""Helpers shared by the issue-5 end-to-end tests (trust, stored secrets, setup-key)."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paramiko
from conftest import Sandbox
from services import Service, echo
from shareproc import SCRIPT, ShareProcess


def public_line(key: paramiko.PKey, comment: str = "test") -> str:
    return f"{key.get_name()} {key.get_base64()} {comment}"


def known_hosts_line(host: str, port: int, key: paramiko.PKey) -> str:
    return f"[{host}]:{port} {key.get_name()} {key.get_base64()}\n"


def env_without_agent(sandbox: Sandbox) -> dict[str, str]:
    """The sandbox env with no ssh-agent: the tests prove the keyring path, not the agent."""
    env = dict(sandbox.env)
    env.pop("SSH_AUTH_SOCK", None)
    return env


@contextmanager
def echo_service() -> Iterator[Service]:
    with Service(echo) as service:
        yield service


def share_started(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], ShareProcess]:
    """Start ``safetunnel share … --yes --json`` and wait for its started event."""
    proc = ShareProcess(["share", *args, "--yes", "--json", "--ttl", "30s"], env)
    try:
        return proc.started(), proc
    except BaseException:
        proc.kill()
        raise


def stop(proc: ShareProcess, env: dict[str, str]) -> int:
    """``safetunnel kill --all``: a clean stop (exit 0 after a full teardown). The sandbox's
    state dir holds only this test's tunnels.

    Not SIGTERM: cli/share.py installs its signal handlers only after the started event, so a
    signal sent right after it can kill the process before any teardown (reported upstream).
    """
    killed = subprocess.run([SCRIPT, "kill", "--all"], env=env, capture_output=True, text=True,
                            timeout=20)
    assert killed.returncode == 0, killed.stderr
    return proc.wait(20)


class PtyRun:
    """The console script on a pseudo-terminal: answer prompts, collect everything shown."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._fd, terminal = pty.openpty()
        self.proc = subprocess.Popen([SCRIPT, *args], stdin=terminal, stdout=terminal,
                                     stderr=terminal, env=env, close_fds=True)
        os.close(terminal)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown; got {self.seen!r}")
            try:
                chunk = os.read(self._fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"{text!r} not shown before EOF; got {self.seen!r}")
            self.seen += chunk

    def send(self, line: str) -> None:
        os.write(self._fd, line.encode() + b"\n")

    def finish(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout=timeout)
        try:
            while chunk := os.read(self._fd, 4096):
                self.seen += chunk
        except OSError:  # EIO once the child closed the terminal
            pass
        os.close(self._fd)
        return code
