"""Helpers for the end-to-end registry tests: real console script, real shares, real sshd.

:class:`Kit` runs ``safetunnel`` subprocesses in a sandbox, starts ``share --background`` shares
(remembering every token they printed, for the secret grep), and at teardown kills every process
that still runs with this sandbox's state dir in its environment, so a failing test leaves no
detached tunnel behind.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from secrets_check import assert_secret_absent
from services import Service, http_keepalive
from shareproc import SCRIPT
from sshd import SSHD

if TYPE_CHECKING:
    from conftest import Sandbox

TOKEN_RE = re.compile(r"st_[A-Za-z0-9_-]{43}")
LIST_KEYS = ("id", "pid", "local", "ssh_host", "remote_bind", "remote_port", "started_at",
             "expires_at", "connections", "total_connections", "bytes_in", "bytes_out")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_running(pid: int) -> bool:
    """True while ``pid`` is a live, non-zombie process (a detached share is not our child)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def http_status(port: int, token: str | None, path: str = "/") -> int:
    """One HTTP/1.1 request through the tunnel; returns the status code (0 if none came)."""
    head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if token is not None:
        head += f"X-Safetunnel-Token: {token}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else 0


class Kit:
    """One sandboxed user driving the real ``safetunnel`` console script."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.env = sandbox.env
        self.sshd: SSHD | None = None
        self.tokens: list[str] = []
        self.outputs: list[str] = []  # every stdout/stderr seen (tokens may appear only in
        self._services: list[Service] = []  # the foreground share's own output)

    # -- running commands -------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([SCRIPT, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        self.outputs += [out.stdout, out.stderr]
        return out

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

    def service(self) -> Service:
        """A recording HTTP service on 127.0.0.1:0, closed at teardown."""
        service = Service(http_keepalive)
        self._services.append(service)
        return service

    def host_args(self) -> list[str]:
        assert self.sshd is not None, "call kit.sshd = sshd first"
        s = self.sshd
        return ["--host", f"{s.user}@127.0.0.1:{s.port}", "--identity", str(s.client_key_path),
                "--known-hosts", str(s.known_hosts)]

    def share_args(self, port: int, ttl: str, *extra: str, builtin: bool = False) -> list[str]:
        host = [] if builtin else self.host_args()
        return ["share", str(port), "--ttl", ttl, *host, "--yes", "--background", *extra]

    def share_bg(self, port: int, ttl: str = "2m", *extra: str,
                 builtin: bool = False) -> dict[str, Any]:
        """``share --background --json``; returns the started event printed on stdout."""
        out = self.ok(*self.share_args(port, ttl, "--json", *extra, builtin=builtin),
                      timeout=60)
        return self.started_from(out)

    def started_from(self, out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json stdout must be one started event: {out.stdout!r}"
        event = json.loads(lines[0])
        assert isinstance(event, dict) and event["event"] == "started", event
        self.tokens.append(event["token"])
        return event

    # -- checks -----------------------------------------------------------------------------------

    def record_path(self, tunnel_id: str) -> Path:
        return self.sandbox.state_dir / "tunnels" / f"{tunnel_id}.json"

    def socket_path(self, tunnel_id: str) -> Path:
        return self.sandbox.state_dir / "tunnels" / f"{tunnel_id}.sock"

    def audit(self, tunnel_id: str | None = None) -> list[dict[str, Any]]:
        path = self.sandbox.state_dir / "audit.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in entries if tunnel_id is None or e["id"] == tunnel_id]

    def assert_no_token_on_disk(self, *more_outputs: str) -> None:
        """Every token seen, absent from every file under HOME, config and state (DESIGN §5)."""
        assert self.tokens, "no token was captured; the check would prove nothing"
        for token in self.tokens:
            assert TOKEN_RE.fullmatch(token), token
            assert_secret_absent(token, self.sandbox.dirs, more_outputs,
                                 allow=[self.sandbox.keyring_file])

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
        for service in self._services:
            service.close()
        return [p.pid for p in leftovers]
