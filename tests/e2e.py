"""Helpers for the end-to-end share tests: run the real console script, talk to the remote end,
and check after every test that nothing was left behind (process, record) and no token leaked.

The ``e2e`` fixture (conftest.py) hands tests an :class:`E2E` and calls its ``finish()`` after.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secrets_check import assert_secret_absent
from services import Service
from shareproc import ShareProcess, run
from sshd import SSHD

if TYPE_CHECKING:
    from conftest import Sandbox


def sshd_args(server: SSHD, *, known_hosts: Path | None = None) -> list[str]:
    """The flags that share through the fixture sshd, host key pinned via --known-hosts."""
    return ["--host", f"{server.user}@{server.host}:{server.port}",
            "--identity", str(server.client_key_path),
            "--known-hosts", str(known_hosts or server.known_hosts)]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


def assert_port_released(port: int, timeout: float = 5.0) -> None:
    """The remote listener is gone: connecting is refused (on both loopbacks)."""
    assert wait_for(lambda: not port_open(port) and not port_open(port, "::1"), timeout), (
        f"remote port {port} still accepts connections")


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_all(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Read until the peer closes (or ``limit`` s pass)."""
    sock.settimeout(limit)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def closed_by_peer(sock: socket.socket, limit: float = 5.0) -> bool:
    """True when the peer closes without sending a byte."""
    sock.settimeout(limit)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request_bytes(path: str = "/", headers: dict[str, str] | None = None,
                  method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, limit: float = 5.0) -> Response:
    """One HTTP/1.1 response (Content-Length bodies, or until close)."""
    sock.settimeout(limit)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before a full response head: {buffer!r}")
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                break
            body += data
    else:
        body += recv_all(sock, limit)
    return Response(int(status_line.split(" ")[1]), headers, body, head + b"\r\n\r\n" + body)


def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> Response:
    with connect(port) as sock:
        sock.sendall(request_bytes(path, headers))
        return read_response(sock)


@dataclass
class E2E:
    """Starts shares for one test and checks, at teardown, that each one left nothing behind."""

    sandbox: Sandbox
    procs: list[ShareProcess] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    servers: list[SSHD] = field(default_factory=list)
    token_files: list[Path] = field(default_factory=list)

    def share(self, port: int, *args: str, via: SSHD | None = None, ttl: str | None = "5s",
              as_json: bool = True, yes: bool = True, extra_env: dict[str, str] | None = None,
              ) -> ShareProcess:
        argv = ["share", str(port)]
        if ttl is not None:
            argv += ["--ttl", ttl]
        if via is not None:
            argv += sshd_args(via)
            self.servers.append(via)
        if yes:
            argv.append("--yes")
        if as_json:
            argv.append("--json")
        argv += list(args)
        proc = ShareProcess(argv, {**self.sandbox.env, **(extra_env or {})})
        self.procs.append(proc)
        return proc

    def started(self, proc: ShareProcess) -> dict[str, Any]:
        event = proc.started()
        if "token" in event:
            self.tokens.append(event["token"])
        return event

    def service(self, handler: Callable[..., None]) -> Service:
        service = Service(handler)
        self.services.append(service)
        return service

    def run(self, args: list[str], **kwargs: Any) -> Any:
        return run(args, self.sandbox.env, **kwargs)

    def records(self) -> list[Path]:
        tunnels = self.sandbox.state_dir / "tunnels"
        return sorted(tunnels.glob("*.json")) if tunnels.exists() else []

    def audit_lines(self) -> list[dict[str, Any]]:
        path = self.sandbox.state_dir / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def finish(self) -> None:
        leftovers = [p for p in self.procs if p.proc.poll() is None]
        for proc in leftovers:
            proc.kill()
        for service in self.services:
            service.close()
        assert not leftovers, f"share processes still running: {[p.args for p in leftovers]}"
        for proc in self.procs:
            proc.join()
        assert self.records() == [], f"records left behind: {self.records()}"
        for token in self.tokens:
            self.assert_token_contained(token)

    def assert_token_contained(self, token: str) -> None:
        """The token appears only in the `started` event (and a --token-file): nowhere else."""
        outputs: list[str | bytes] = [bytes(s.received) for s in self.services]
        outputs += [s.log_text() for s in self.servers]
        for proc in self.procs:
            outputs.append("".join(line for line in proc.stdout_lines
                                   if '"event":"started"' not in line))
            if "--json" in proc.args:
                outputs.append(proc.stderr)  # human text goes to stderr; no token in --json mode
        assert_secret_absent(token, self.sandbox.dirs, outputs, allow=self.token_files)

