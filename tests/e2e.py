"""The shared toolkit of the end-to-end tests: run the real console script (piped or on a
pseudo-terminal), talk to the remote end, poll for conditions, and check after every test that
nothing was left behind (process, record) and no token leaked.

The ``e2e`` fixture (conftest.py) hands tests an :class:`E2E` and calls its ``finish()`` after;
the registry tests' ``Kit`` (e2e_registry_kit.py) and the issue-5 helpers (issue5kit.py) build on
the same pieces.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from secrets_check import assert_secret_absent
from services import Service, http_keepalive
from shareproc import SCRIPT, ShareProcess, run
from sshd import SSHD

if TYPE_CHECKING:
    from conftest import Sandbox

TOKEN_RE = re.compile(r"st_[A-Za-z0-9_-]{43}")


# -- command lines --------------------------------------------------------------------------------


def sshd_args(
    server: SSHD, *, known_hosts: Path | None = None, identity: Path | None = None
) -> list[str]:
    """The flags that share through the fixture sshd, host key pinned via --known-hosts."""
    return [
        "--host",
        f"{server.user}@{server.host}:{server.port}",
        "--identity",
        str(identity or server.client_key_path),
        "--known-hosts",
        str(known_hosts or server.known_hosts),
    ]


def public_line(key: paramiko.PKey, comment: str = "test") -> str:
    """An authorized_keys line for ``key``."""
    return f"{key.get_name()} {key.get_base64()} {comment}"


def known_hosts_line(host: str, port: int, key: paramiko.PKey) -> str:
    """A known_hosts line pinning ``key`` for ``[host]:port``."""
    return f"[{host}]:{port} {key.get_name()} {key.get_base64()}\n"


def share_argv(
    port: int | str,
    *extra: str,
    ttl: str | None = "5s",
    via: SSHD | None = None,
    yes: bool = True,
    as_json: bool = True,
    background: bool = False,
) -> list[str]:
    """``share PORT [--ttl T] [sshd flags] [--yes] [--json] [--background] EXTRA…``."""
    argv = ["share", str(port)]
    if ttl is not None:
        argv += ["--ttl", ttl]
    if via is not None:
        argv += sshd_args(via)
    if yes:
        argv.append("--yes")
    if as_json:
        argv.append("--json")
    if background:
        argv.append("--background")
    return [*argv, *extra]


def token_from(text: str) -> str:
    """The (first) share token shown in ``text``."""
    match = TOKEN_RE.search(text)
    assert match, text
    return match.group(0)


# -- polling --------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` s pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """:func:`wait_for`, failing (never hanging) when ``predicate`` is still false."""
    if not wait_for(predicate, timeout, interval):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- sockets --------------------------------------------------------------------------------------


def _connect_once(port: int, host: str, timeout: float) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Something accepts connections on ``host:port``."""
    try:
        _connect_once(port, host, timeout)
    except OSError:
        return False
    return True


def port_refused(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Strict form of ``not port_open``: True only for a refusal (a timeout or any other error
    is raised, never taken as "closed")."""
    try:
        _connect_once(port, host, timeout)
    except ConnectionRefusedError:
        return True
    return False


def assert_port_released(port: int, timeout: float = 5.0) -> None:
    """The remote listener is gone: connecting is refused (on both loopbacks)."""
    assert wait_for(lambda: not port_open(port) and not port_open(port, "::1"), timeout), (
        f"remote port {port} still accepts connections"
    )


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


def request_bytes(
    path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> bytes:
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


def http_get(
    port: int, path: str = "/", headers: dict[str, str] | None = None, timeout: float = 5.0
) -> Response:
    """One raw HTTP/1.1 request on a fresh connection to 127.0.0.1:port, and its response."""
    with connect(port, timeout) as sock:
        sock.sendall(request_bytes(path, headers))
        return read_response(sock, timeout)


def http_status(port: int, token: str | None, path: str = "/") -> int:
    """The status of one ``Connection: close`` request, with the token header when given."""
    headers = {"Connection": "close"}
    if token is not None:
        headers["X-Safetunnel-Token"] = token
    return http_get(port, path, headers, timeout=10.0).status


# -- a pseudo-terminal ----------------------------------------------------------------------------

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


class Pty:
    """``safetunnel <args>`` with a pty as stdin, stdout and stderr (a real terminal to it).

    ``expect`` waits for text shown after the previous match, ``send`` types a line, ``wait``
    collects everything until the process exits. ``output`` is every raw byte shown, ``text``
    the same without ANSI sequences and carriage returns. Close it (or use ``with``).
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, terminal = os.openpty()
        self.proc = subprocess.Popen(
            [SCRIPT, *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            start_new_session=True,
        )
        os.close(terminal)
        self.output = b""
        self._cursor = 0
        self._closed = False

    @property
    def text(self) -> str:
        return _ANSI.sub(b"", self.output).decode(errors="replace").replace("\r", "")

    def _read(self, wait: float) -> bytes | None:
        """What the terminal shows within ``wait`` s: None if nothing, b"" once it is closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return None
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        self.output += chunk
        return chunk

    def expect(self, needle: str | bytes, timeout: float = 20.0) -> str:
        """Wait until ``needle`` is shown after the previous match; returns all text so far."""
        want = needle.decode() if isinstance(needle, bytes) else needle
        deadline = time.monotonic() + timeout
        while (found := self.text.find(want, self._cursor)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{want!r} did not appear; output:\n{self.text}")
            if self._read(min(left, 0.2)) == b"":
                raise AssertionError(f"exited before {want!r}; output:\n{self.text}")
        self._cursor = found + len(want)
        return self.text

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def wait(self, timeout: float = 20.0) -> int:
        """The exit code, collecting all output (subprocess.TimeoutExpired after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        while self._read(0.05):  # what was shown just before the exit
            pass
        return code

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)

    def __enter__(self) -> Pty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- runners --------------------------------------------------------------------------------------


class SandboxUser:
    """What :class:`E2E` and the registry ``Kit`` share: the sandbox's services, tunnel records
    and audit log."""

    sandbox: Sandbox
    services: list[Service]

    def service(self, handler: Callable[..., None] = http_keepalive) -> Service:
        """A recording service on 127.0.0.1:0, closed at teardown."""
        service = Service(handler)
        self.services.append(service)
        return service

    def close_services(self) -> None:
        for service in self.services:
            service.close()

    def record_path(self, tunnel_id: str) -> Path:
        return self.sandbox.state_dir / "tunnels" / f"{tunnel_id}.json"

    def socket_path(self, tunnel_id: str) -> Path:
        return self.sandbox.state_dir / "tunnels" / f"{tunnel_id}.sock"

    def records(self) -> list[Path]:
        tunnels = self.sandbox.state_dir / "tunnels"
        return sorted(tunnels.glob("*.json")) if tunnels.exists() else []

    def audit(self, tunnel_id: str | None = None) -> list[dict[str, Any]]:
        """The audit log's entries (of one tunnel, when given)."""
        path = self.sandbox.state_dir / "audit.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in entries if tunnel_id is None or e["id"] == tunnel_id]


@dataclass
class E2E(SandboxUser):
    """Starts shares for one test and checks, at teardown, that each one left nothing behind."""

    sandbox: Sandbox
    procs: list[ShareProcess] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    servers: list[SSHD] = field(default_factory=list)
    token_files: list[Path] = field(default_factory=list)

    def share(
        self,
        port: int,
        *args: str,
        via: SSHD | None = None,
        ttl: str | None = "5s",
        as_json: bool = True,
        yes: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> ShareProcess:
        if via is not None:
            self.servers.append(via)
        argv = share_argv(port, *args, ttl=ttl, via=via, yes=yes, as_json=as_json)
        proc = ShareProcess(argv, {**self.sandbox.env, **(extra_env or {})})
        self.procs.append(proc)
        return proc

    def started(self, proc: ShareProcess) -> dict[str, Any]:
        event = proc.started()
        if "token" in event:
            self.tokens.append(event["token"])
        return event

    def run(self, args: list[str], **kwargs: Any) -> Any:
        return run(args, self.sandbox.env, **kwargs)

    def finish(self) -> None:
        leftovers = [p for p in self.procs if p.proc.poll() is None]
        for proc in leftovers:
            proc.kill()
        self.close_services()
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
            outputs.append(
                "".join(line for line in proc.stdout_lines if '"event":"started"' not in line)
            )
            if "--json" in proc.args:
                outputs.append(proc.stderr)  # human text goes to stderr; no token in --json mode
        assert_secret_absent(token, self.sandbox.dirs, outputs, allow=self.token_files)
