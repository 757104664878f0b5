"""Far ends that are not SSH servers: one line that says what they did, exit 1, no traceback.

The fake servers here are plain sockets (they never speak SSH, so they are fair stand-ins): one
accepts and stays silent, one sends an SSH greeting and nothing more, one closes at once, one
reads the client's key exchange and then drops the connection. Every command that connects
(``share`` on each engine, ``share --background``, ``hosts trust``, ``hosts setup-key
--install``) must tell it the same way, so each fault is checked on each where it is fast.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import paramiko
import pytest
from conftest import Sandbox
from e2e import run
from services import Service, echo

from safetunnel.errors import SSHError
from safetunnel.ssh._transport import TunedTransport, connect_socket
from safetunnel.ssh.handshake import run_handshake
from safetunnel.ssh.openssh.errors import errors_from_ssh
from safetunnel.ssh.target import SSHTarget

pytestmark = pytest.mark.fault


class FakeServer:
    """A listener on 127.0.0.1:0 whose every connection gets ``behaviour``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        if self.behaviour == "close":
            conn.close()
            return
        if self.behaviour in ("banner", "drop"):
            conn.sendall(b"SSH-2.0-x\r\n")
        if self.behaviour == "drop":
            conn.settimeout(5)
            conn.recv(4096)  # the client's greeting and key exchange offer, then hang up
            conn.close()
            return
        self._held.append(conn)  # "silent" and "banner": keep it open, say nothing more

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@contextlib.contextmanager
def fake_server(behaviour: str) -> Iterator[FakeServer]:
    server = FakeServer(behaviour)
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def assert_one_line_error(out: str, code: int, expected: str, actual_code: int) -> None:
    assert actual_code == code, out
    assert "Traceback" not in out and "Exception" not in out, out
    errors = [line for line in out.splitlines() if "Error: " in line]
    errors = [line[line.index("Error: ") :] for line in errors]
    assert errors == [f"Error: {expected}"], out


def commands(sandbox: Sandbox, port: int, service_port: int) -> dict[str, list[str]]:
    """Each command that connects, pointed at 127.0.0.1:port."""
    host = f"127.0.0.1:{port}"
    known = str(sandbox.home / "known_hosts")
    share = ["share", str(service_port), "--host", host, "--known-hosts", known, "--yes"]
    return {
        "share": share,  # auto: the OpenSSH engine
        "share-paramiko": [*share, "--engine", "paramiko"],
        "background": [*share, "--background"],
        "trust": ["hosts", "trust", host],
        "setup-key": ["hosts", "setup-key", "lab", "--install", "--yes", "--known-hosts", known],
    }


def check_everywhere(sandbox: Sandbox, port: int, expected: str) -> None:
    added = run(["hosts", "add", "lab", f"127.0.0.1:{port}", "--no-check"], sandbox.env)
    assert added.returncode == 0, added.stderr
    with Service(echo) as service:
        for name, argv in commands(sandbox, port, service.port).items():
            out = run(argv, sandbox.env)
            assert_one_line_error(f"{name}: {out.stderr}", 1, expected, out.returncode)
    assert not list(sandbox.state_dir.glob("tunnels/*"))


def test_a_server_that_closes_at_once(sandbox: Sandbox) -> None:
    with fake_server("close") as server:
        check_everywhere(
            sandbox,
            server.port,
            f"127.0.0.1:{server.port} closed the connection without sending an SSH greeting",
        )


def test_a_handshake_dropped_midway(sandbox: Sandbox) -> None:
    with fake_server("drop") as server:
        check_everywhere(
            sandbox,
            server.port,
            f"127.0.0.1:{server.port} closed the connection during the SSH key exchange "
            "(after its greeting SSH-2.0-x)",
        )


def test_a_closed_port(sandbox: Sandbox) -> None:
    port = closed_port()
    check_everywhere(sandbox, port, f"Cannot connect to 127.0.0.1 port {port}: Connection refused")


@pytest.mark.parametrize(
    ("behaviour", "said"),
    [
        ("silent", "accepted the connection but sent no SSH greeting within 0.5 s"),
        (
            "banner",
            "sent an SSH greeting (SSH-2.0-x) but did not complete the key exchange within 0.5 s",
        ),
    ],
)
def test_a_silent_far_end_is_told_apart_from_one_that_stopped_after_its_greeting(
    behaviour: str, said: str
) -> None:
    with fake_server(behaviour) as server:
        sock = connect_socket("127.0.0.1", server.port, 5.0)
        transport = TunedTransport(sock, 5.0)
        with pytest.raises(SSHError) as caught:
            run_handshake(transport, f"127.0.0.1:{server.port}", 0.5)
        assert str(caught.value) == f"127.0.0.1:{server.port} {said}"
        assert not transport.is_active()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["share", "share-paramiko", "background", "trust"])
def test_a_port_that_accepts_but_never_speaks_ssh(sandbox: Sandbox, command: str) -> None:
    """The default 10 s handshake deadline, through the real commands (10 s each)."""
    with fake_server("silent") as server, Service(echo) as service:
        argv = commands(sandbox, server.port, service.port)[command]
        out = run(argv, sandbox.env, timeout=40)
        expected = (
            f"127.0.0.1:{server.port} accepted the connection but sent no SSH greeting within 10 s"
        )
        assert_one_line_error(out.stderr, 1, expected, out.returncode)


@pytest.mark.slow
def test_a_banner_only_server_has_a_reason(sandbox: Sandbox) -> None:
    with fake_server("banner") as server:
        out = run(["hosts", "trust", f"127.0.0.1:{server.port}"], sandbox.env, timeout=40)
        expected = (
            f"127.0.0.1:{server.port} sent an SSH greeting (SSH-2.0-x) but did not complete "
            "the key exchange within 10 s"
        )
        assert_one_line_error(out.stderr, 1, expected, out.returncode)


def test_a_rekey_during_a_global_request_does_not_answer_it() -> None:
    """paramiko sets completion_event when a rekey ends; the request must wait for its reply."""
    left, right = socket.socketpair()
    transport = TunedTransport(left, timeout=5)
    reply = paramiko.Message(b"the reply")
    transport.global_response = None  # the answer of an earlier request

    def send(_: paramiko.Message) -> None:
        def peer() -> None:
            event = transport.completion_event
            assert event is not None
            event.set()  # what _parse_newkeys does at the end of a rekey
            threading.Event().wait(0.2)
            transport.global_response = reply
            event.set()

        threading.Thread(target=peer).start()

    transport._send_user_message = send  # type: ignore[method-assign,assignment]
    transport.is_active = lambda: True  # type: ignore[method-assign]
    transport.clear_to_send.set()  # past the first key exchange, as a request always is
    try:
        assert transport.timed_request("keepalive@openssh.com", None, 5) is reply
    finally:
        left.close()
        right.close()


def test_a_connect_that_times_out_says_the_far_end_did_not_answer() -> None:
    """A listener whose accept queue is full drops further SYNs: the connect cannot finish."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        port = full.getsockname()[1]
        queued: list[socket.socket] = []
        try:
            with pytest.raises(SSHError) as caught:
                for _ in range(8):  # fills the queue; the next connect hangs until the timeout
                    queued.append(connect_socket("127.0.0.1", port, 0.5))
        finally:
            for sock in queued:
                sock.close()
    assert str(caught.value) == f"127.0.0.1:{port} did not answer within 0.5 s"


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        (
            "ssh: connect to host 192.0.2.7 port 2222: Connection timed out",
            "192.0.2.7:2222 did not answer within 10 s",
        ),
        (
            "debug1: Connection established.\nConnection timed out during banner exchange\n"
            "Connection to 192.0.2.7 port 2222 timed out",
            "192.0.2.7:2222 accepted the connection but sent no SSH greeting within 10 s",
        ),
        (
            "debug1: kex_exchange_identification: banner line 0: HTTP/1.1 400 Bad\n"
            "kex_exchange_identification: Connection closed by remote host",
            "192.0.2.7:2222 answered, but not with an SSH greeting",
        ),
        (
            "debug1: Remote protocol version 2.0, remote software version x y\n"
            "debug1: SSH2_MSG_KEXINIT sent\nConnection to 192.0.2.7 port 2222 timed out",
            "192.0.2.7:2222 sent an SSH greeting (SSH-2.0-x y) but did not complete the key "
            "exchange within 10 s",
        ),
    ],
)
def test_openssh_faults_read_like_the_paramiko_ones(stderr: str, said: str) -> None:
    error = errors_from_ssh(stderr, SSHTarget("192.0.2.7", 2222, "ann"))
    assert type(error) is SSHError and error.exit_code == 1
    assert str(error) == said


def test_a_host_name_that_does_not_resolve(sandbox: Sandbox) -> None:
    known = str(sandbox.home / "known_hosts")
    share = ["share", "1", "--host", "nosuchhost.invalid", "--known-hosts", known, "--yes"]
    said = []
    with Service(echo) as service:
        share[1] = str(service.port)
        for engine in ("openssh", "paramiko"):
            out = run([*share, "--engine", engine], sandbox.env)
            errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
            assert out.returncode == 1 and len(errors) == 1, out.stderr
            assert errors[0].startswith("Error: Cannot connect to nosuchhost.invalid port 22: ")
            assert "hint: Check the host name and port" in out.stderr, out.stderr
            said.append(errors[0])
    assert said[0] == said[1], "the two engines word it differently"
