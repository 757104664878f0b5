"""The one harness of the end-to-end tests.

The ``e2e`` fixture (conftest.py) hands every end-to-end test an :class:`E2E`: it runs the real
console script (piped, on a pseudo-terminal, or ``--background``), runs the commands that need no
subprocess in-process (:func:`run_cli`), and after the test checks the same invariants for every
test: no share process left (leftovers are killed, then the test fails), no record left, and no
token anywhere (files, outputs, sshd logs, the bytes a service received) except where it is shown
on purpose (the ``started`` event, the human summary, a ``--token-file``, the test keyring).
The socket, HTTP and polling helpers below are plain functions for any test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import paramiko
import psutil
from click.testing import CliRunner
from secrets_check import assert_secret_absent
from services import Service, http_keepalive
from sshd import SSHD

if TYPE_CHECKING:
    from conftest import Sandbox

TOKEN_RE = re.compile(r"st_[A-Za-z0-9_-]{43}")
SCRIPT = str(Path(sys.executable).with_name("safetunnel"))
# The commands whose stdout shows the token on purpose (the started event, the human summary).
# Their stdout shows a secret on purpose (`ticket` prints only the minted ticket there).
_SHOWS_TOKEN = {"share", "demo", "ticket"}


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


def bg_share_argv(port: int | str, ttl: str, *extra: str, via: SSHD | None) -> list[str]:
    """``share PORT --ttl TTL [via] --yes --background EXTRA…`` (add ``--json`` in EXTRA)."""
    return share_argv(port, *extra, ttl=ttl, via=via, as_json=False, background=True)


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


# -- processes ------------------------------------------------------------------------------------


class ShareProcess:
    """``safetunnel <args>`` with stdout/stderr read by threads into lists (nothing is lost).

    Every stdout line is a JSON event (``--json``) unless ``json_events`` is false.
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        json_events: bool = True,
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [SCRIPT, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.proc.stdout, self.stdout_lines, json_events)
            ),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, False)),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], sink: list[str], parse: bool) -> None:
        for raw in stream:
            line = raw.decode(errors="replace")
            sink.append(line)
            if parse and line.strip():
                self._events.put(json.loads(line))

    def next_event(self, kind: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {kind or 'event'} within {timeout}s; stderr:\n{self.stderr}"
                )
            try:
                event = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self._events.empty():
                    self.join()
                    if self._events.empty():
                        raise AssertionError(
                            f"exited {self.proc.returncode} before {kind}; stderr:\n{self.stderr}"
                        ) from None
                continue
            if kind is None or event.get("event") == kind:
                return event

    def started(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.next_event("started", timeout)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.join()
        return code

    def join(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def run(
    args: list[str], env: dict[str, str], timeout: float = 30.0, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess, to completion."""
    return subprocess.run(
        [SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class CliResult:
    """What :func:`run_cli` saw: the exit code and the two streams, kept apart."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, input_text: str | None = None) -> CliResult:
    """``safetunnel ARGS`` in this process, through the same ``main`` and error boundary as the
    console script, with stdout and stderr captured apart (and ``input_text`` as stdin).

    For commands that need no process of their own (list, status, log, kill, extend, hosts,
    creds, --help, usage errors): a subprocess costs an interpreter start and every import. The
    environment is this process's, which the ``sandbox`` fixture points at its own dirs.
    """
    from safetunnel.cli import main

    with CliRunner().isolation(input=input_text) as (out, err, _):
        try:
            main(list(args))
            code: int = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return CliResult(list(args), code, out.getvalue().decode(), err.getvalue().decode())


def env_without_agent(sandbox: Sandbox) -> dict[str, str]:
    """The sandbox env with no ssh-agent: for tests that prove the keyring path, not the agent."""
    env = dict(sandbox.env)
    env.pop("SSH_AUTH_SOCK", None)
    return env


def share_started(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], ShareProcess]:
    """Start ``safetunnel share PORT … --ttl 30s --yes --json`` and wait for its started event."""
    proc = ShareProcess(share_argv(*args, ttl="30s"), env)
    try:
        return proc.started(), proc
    except BaseException:
        proc.kill()
        raise


def stop(proc: ShareProcess, env: dict[str, str]) -> int:
    """``safetunnel kill --all`` and the share's exit code: a clean stop after a full teardown
    (the sandbox's state dir holds only this test's tunnels). Not SIGTERM: a signal sent right
    after the started event can arrive before the share installed its handlers."""
    killed = run(["kill", "--all"], env, timeout=20)
    assert killed.returncode == 0, killed.stderr
    return proc.wait(20)


def pid_running(pid: int) -> bool:
    """True while ``pid`` is a live, non-zombie process (a detached share is not our child)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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


# -- the harness ----------------------------------------------------------------------------------

Output = subprocess.CompletedProcess[str] | CliResult


@dataclass
class E2E:
    """One sandboxed user for one test: shares, commands, services, and the checks at the end."""

    sandbox: Sandbox
    procs: list[ShareProcess] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    servers: list[SSHD] = field(default_factory=list)
    token_files: list[Path] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    tickets: list[str] = field(default_factory=list)  # secrets like the tokens, checked alike

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.env

    # -- shares -----------------------------------------------------------------------------------

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
        """A foreground share (``share PORT --ttl T [via] --yes --json ARGS``), not yet started."""
        if via is not None:
            self.servers.append(via)
        argv = share_argv(port, *args, ttl=ttl, via=via, yes=yes, as_json=as_json)
        proc = ShareProcess(argv, {**self.env, **(extra_env or {})})
        self.procs.append(proc)
        return proc

    def started(self, proc: ShareProcess) -> dict[str, Any]:
        """Wait for ``proc``'s started event; its token joins the ones checked at the end."""
        event = proc.started()
        if "token" in event:
            self.tokens.append(event["token"])
        if "ticket" in event:
            self.tickets.append(event["ticket"])
        return event

    def connect(self, ticket: str, *args: str, via: SSHD) -> ShareProcess:
        """``safetunnel connect - --json --identity KEY ARGS`` with ``ticket`` written to its
        stdin, as a recipient pastes it; the ticket is checked like the tokens at the end."""
        self.tickets.append(ticket)
        argv = ["connect", "-", "--json", "--identity", str(via.client_key_path), *args]
        proc = ShareProcess(argv, self.env, stdin=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(ticket.encode() + b"\n")
        proc.proc.stdin.close()
        return proc

    def share_bg(self, port: int, ttl: str = "2m", *extra: str, via: SSHD | None) -> dict[str, Any]:
        """``share --background --json`` to completion; returns its started event."""
        if via is not None:
            self.servers.append(via)
        argv = bg_share_argv(port, ttl, "--json", *extra, via=via)
        return self.started_from(self.ok(*argv, timeout=60))

    def started_from(self, out: Output) -> dict[str, Any]:
        """The one started event a ``--background --json`` run printed (its token is kept)."""
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json stdout must be one started event: {out.stdout!r}"
        event = json.loads(lines[0])
        assert isinstance(event, dict) and event["event"] == "started", event
        self.tokens.append(event["token"])
        if "ticket" in event:
            self.tickets.append(event["ticket"])
        return event

    # -- commands ---------------------------------------------------------------------------------

    def run(
        self,
        *args: str,
        timeout: float = 30.0,
        input_text: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The console script in a subprocess (for share, signals, --background)."""
        out = run(list(args), env or self.env, timeout=timeout, input_text=input_text)
        self.outputs.append(out)
        return out

    def ok(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        out = self.run(*args, timeout=timeout)
        assert out.returncode == 0, (args, out.returncode, out.stdout, out.stderr)
        return out

    def cli(self, *args: str, input_text: str | None = None) -> CliResult:
        """``safetunnel ARGS`` in this process (:func:`run_cli`); outputs are checked at the end."""
        out = run_cli(*args, input_text=input_text)
        self.outputs.append(out)
        return out

    def cli_ok(self, *args: str) -> CliResult:
        out = self.cli(*args)
        assert out.returncode == 0, (args, out.returncode, out.stdout, out.stderr)
        return out

    def list_json(self) -> list[dict[str, Any]]:
        records = json.loads(self.cli_ok("list", "--json").stdout)
        assert isinstance(records, list)
        return records

    def status(self, tunnel_id: str) -> dict[str, Any]:
        info = json.loads(self.cli_ok("status", tunnel_id, "--json").stdout)
        assert isinstance(info, dict)
        return info

    # -- the sandbox's services, records and audit log -------------------------------------------

    def service(
        self, handler: Callable[..., None] = http_keepalive, host: str = "127.0.0.1"
    ) -> Service:
        """A recording service on ``host`` (a free port), closed at teardown."""
        service = Service(handler, host=host)
        self.services.append(service)
        return service

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

    def own_processes(self) -> Iterator[psutil.Process]:
        """Live processes started for this sandbox (found by its state dir in their environment),
        including detached ``--background`` shares that are nobody's child."""
        state = str(self.sandbox.state_dir)
        me = os.getpid()
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                mine = proc.pid != me and proc.environ().get("SAFETUNNEL_STATE_DIR") == state
                if mine and pid_running(proc.pid):
                    yield proc

    # -- checks -----------------------------------------------------------------------------------

    def assert_no_token_on_disk(self, *more_outputs: str) -> None:
        """Every token seen so far, absent from every file under HOME, config and state."""
        assert self.tokens, "no token was captured; the check would prove nothing"
        for token in self.tokens:
            assert TOKEN_RE.fullmatch(token), token
            assert_secret_absent(token, self.sandbox.dirs, more_outputs, allow=self._allowed())

    def _allowed(self) -> list[Path]:
        return [self.sandbox.keyring_file, *self.token_files]

    def _checked_outputs(self) -> list[str | bytes]:
        """Everything said or received, less what shows the token on purpose."""
        outputs: list[str | bytes] = [bytes(s.received) for s in self.services]
        outputs += [s.log_text() for s in self.servers]
        for proc in self.procs:
            outputs.append("".join(x for x in proc.stdout_lines if '"event":"started"' not in x))
            if "--json" in proc.args:
                outputs.append(proc.stderr)  # human text goes to stderr; no token in --json mode
        for out in self.outputs:
            args = [str(arg) for arg in out.args]
            if args and args[0] == SCRIPT:
                args = args[1:]
            if not args or args[0] not in _SHOWS_TOKEN:
                outputs += [out.stdout, out.stderr]
            elif "--json" in args or args[0] == "ticket":
                outputs.append(out.stderr)
        return outputs

    def finish(self) -> None:
        """The end-of-test invariants; leftovers are killed first so a failure leaks nothing."""
        leftovers = [p.args for p in self.procs if p.proc.poll() is None]
        for proc in self.procs:
            proc.kill()
        strays = list(self.own_processes())
        for stray in strays:
            with contextlib.suppress(psutil.Error):
                stray.send_signal(signal.SIGKILL)
        psutil.wait_procs(strays, timeout=5)
        for service in self.services:
            service.close()
        assert not leftovers, f"share processes still running: {leftovers}"
        assert not strays, f"processes left running: {[p.pid for p in strays]}"
        assert self.records() == [], f"records left behind: {self.records()}"
        outputs = self._checked_outputs()
        for secret in [*self.tokens, *self.tickets]:
            assert_secret_absent(secret, self.sandbox.dirs, outputs, allow=self._allowed())
