"""Helpers for the end-to-end registry tests: real console script, real shares, real sshd.

:class:`Kit` runs ``safetunnel`` subprocesses in a sandbox, starts ``share --background`` shares
(remembering every token they printed, for the secret grep), and at teardown kills every process
that still runs with this sandbox's state dir in its environment, so a failing test leaves no
detached tunnel behind. The generic pieces (polling, sockets, HTTP, command lines, records and
audit log) come from e2e.py.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psutil
from e2e import TOKEN_RE, SandboxUser, share_argv
from secrets_check import assert_secret_absent
from services import Service
from shareproc import run
from sshd import SSHD

if TYPE_CHECKING:
    from conftest import Sandbox

LIST_KEYS = (
    "id",
    "pid",
    "local",
    "ssh_host",
    "remote_bind",
    "remote_port",
    "started_at",
    "expires_at",
    "connections",
    "total_connections",
    "bytes_in",
    "bytes_out",
)


def pid_running(pid: int) -> bool:
    """True while ``pid`` is a live, non-zombie process (a detached share is not our child)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Kit(SandboxUser):
    """One sandboxed user driving the real ``safetunnel`` console script."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.env = sandbox.env
        self.sshd: SSHD | None = None
        self.tokens: list[str] = []
        self.services: list[Service] = []

    # -- running commands -------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(list(args), self.env, timeout=timeout)

    def ok(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        out = self.run(*args, timeout=timeout)
        assert out.returncode == 0, (args, out.returncode, out.stdout, out.stderr)
        return out

    def list_json(self) -> list[dict[str, Any]]:
        records = json.loads(self.ok("list", "--json").stdout)
        assert isinstance(records, list)
        return records

    def status(self, tunnel_id: str) -> dict[str, Any]:
        info = json.loads(self.ok("status", tunnel_id, "--json").stdout)
        assert isinstance(info, dict)
        return info

    # -- shares -----------------------------------------------------------------------------------

    def share_args(self, port: int, ttl: str, *extra: str, builtin: bool = False) -> list[str]:
        """``share PORT --ttl TTL [via kit.sshd] --yes --background EXTRA…``."""
        assert builtin or self.sshd is not None, "call kit.sshd = sshd first"
        return share_argv(
            port,
            *extra,
            ttl=ttl,
            via=None if builtin else self.sshd,
            as_json=False,
            background=True,
        )

    def share_bg(
        self, port: int, ttl: str = "2m", *extra: str, builtin: bool = False
    ) -> dict[str, Any]:
        """``share --background --json``; returns the started event printed on stdout."""
        out = self.ok(*self.share_args(port, ttl, "--json", *extra, builtin=builtin), timeout=60)
        return self.started_from(out)

    def started_from(self, out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json stdout must be one started event: {out.stdout!r}"
        event = json.loads(lines[0])
        assert isinstance(event, dict) and event["event"] == "started", event
        self.tokens.append(event["token"])
        return event

    # -- checks -----------------------------------------------------------------------------------

    def assert_no_token_on_disk(self, *more_outputs: str) -> None:
        """Every token seen, absent from every file under HOME, config and state (DESIGN §5)."""
        assert self.tokens, "no token was captured; the check would prove nothing"
        for token in self.tokens:
            assert TOKEN_RE.fullmatch(token), token
            assert_secret_absent(
                token, self.sandbox.dirs, more_outputs, allow=[self.sandbox.keyring_file]
            )

    # -- teardown ---------------------------------------------------------------------------------

    def own_processes(self) -> Iterator[psutil.Process]:
        """Processes started for this sandbox (found by its state dir in their environment)."""
        state = str(self.sandbox.state_dir)
        for proc in psutil.process_iter():
            if proc.pid == psutil.Process().pid:
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("SAFETUNNEL_STATE_DIR") == state:
                    yield proc

    def cleanup(self) -> list[int]:
        """Kill whatever this sandbox left running; returns the pids that had to be killed."""
        leftovers = [p for p in self.own_processes() if pid_running(p.pid)]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(leftovers, timeout=5)
        self.close_services()
        return [p.pid for p in leftovers]
