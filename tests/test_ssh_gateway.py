from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import paramiko
import psutil
import pytest
from e2e import port_refused

from safetunnel.errors import AuthFailed, ConfigError, ForwardRefused
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.client import SSHSession, open_session
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.gateway import Gateway, load_authorized_keys, start_builtin
from safetunnel.ssh.keys import generate_ed25519
from safetunnel.ssh.target import SSHTarget

BuiltIn = tuple[Gateway, paramiko.PKey]


def connect(gateway: Gateway, key: paramiko.PKey | None, **kwargs: object) -> SSHSession:
    host, port = gateway.address
    options: dict[str, object] = {
        "hostkeys": None,
        "on_unknown_key": None,
        "auth": None,
        "client_key": key,
        "expected_key": gateway.host_key,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return open_session(SSHTarget(host, port, "tunnel"), **options)  # type: ignore[arg-type]


class Echo:
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.origins: list[tuple[str, int]] = []

    def _serve(self, stream: ByteStream) -> None:
        # The test may close the session first; closing the channel then finds no transport.
        with contextlib.suppress(EOFError, OSError):
            while data := stream.read(65536):
                stream.write_all(data[::-1])
        stream.close()

    def __call__(self, stream: ByteStream) -> None:
        self.origins.append(stream.origin)
        thread = threading.Thread(target=self._serve, args=(stream,), name="test-echo")
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(5)


def listen_ips(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_forward_through_builtin_gateway(builtin_gateway: BuiltIn) -> None:
    gateway, key = builtin_gateway
    assert gateway.address[0] == "127.0.0.1"
    echo = Echo()
    with connect(gateway, key) as session:
        assert session.host_key_state == "builtin"
        assert session.strict_kex
        port = session.forward("localhost", 0, echo).port
        assert listen_ips(port) == {"127.0.0.1"}
        payload = bytes(range(256)) * 2048  # 512 KiB: crosses windows and packets
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            got = b""
            while len(got) < len(payload):
                chunk = sock.recv(262144)
                assert chunk
                got += chunk
            sender.join()
        # each chunk reversed by the echo: compare the multiset of bytes
        assert sorted(got) == sorted(payload)
        assert echo.origins and echo.origins[0][0] == "127.0.0.1"
    echo.join()
    assert port_refused(port)


def test_refuses_public_bind_unless_allowed(builtin_gateway: BuiltIn) -> None:
    gateway, key = builtin_gateway
    with connect(gateway, key) as session, pytest.raises(ForwardRefused):
        session.forward("0.0.0.0", 0, Echo())
    with connect(gateway, key) as session, pytest.raises(ForwardRefused):
        session.forward("10.1.2.3", 0, Echo())
    with connect(gateway, key) as session, pytest.raises(ConfigError):
        session.forward("", 0, Echo())
    client_key = generate_ed25519()
    public = Gateway(authorized_keys=[client_key], allow_public=True).start()
    with public, connect(public, client_key) as session:
        port = session.forward("0.0.0.0", 0, Echo()).port
        assert listen_ips(port) == {"0.0.0.0"}


def test_refuses_sessions_exec_and_direct_tcpip(builtin_gateway: BuiltIn) -> None:
    gateway, key = builtin_gateway
    with connect(gateway, key) as session:
        with pytest.raises(paramiko.ChannelException):
            session.transport.open_session(timeout=5)
        with pytest.raises(paramiko.ChannelException):
            session.transport.open_channel(
                "direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 1), timeout=5
            )
        assert session.global_request("keepalive@openssh.com") is None  # a reply: failure


def test_session_older_than_limit_is_closed() -> None:
    gateway, key = start_builtin(max_session_seconds=1.0)
    with gateway:
        lost = threading.Event()
        session = connect(gateway, key)
        port = session.forward("localhost", 0, Echo()).port
        session.start_watchdog(0.3, lost.set)
        started = time.monotonic()
        assert lost.wait(4)
        assert time.monotonic() - started < 3
        assert not session.transport.is_active()
        assert port_refused(port)
        session.close()


def test_close_frees_ports_and_joins_threads() -> None:
    gateway, key = start_builtin()
    echo = Echo()
    session = connect(gateway, key)
    port = session.forward("localhost", 0, echo).port
    sock = socket.create_connection(("127.0.0.1", port), 5)
    sock.sendall(b"abc")
    assert sock.recv(10) == b"cba"
    gateway_port = gateway.address[1]
    gateway.close()
    gateway.close()
    assert sock.recv(10) == b""  # the relayed connection was cut
    sock.close()
    session.close()
    echo.join()
    assert port_refused(port) and port_refused(gateway_port)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("safetunnel-")]


def test_wrong_key_and_password_auth() -> None:
    class Auth:
        def __init__(self, password: str) -> None:
            self.secret = password
            self.rejections: list[SecretName] = []

        def passphrase(self, key_path: str) -> str | None:
            return None

        def password(self, target: SSHTarget) -> str | None:
            return None if self.rejections else self.secret

        def rejected(self, name: SecretName) -> None:
            self.rejections.append(name)

        def wrong(self, name: SecretName) -> bool:
            return False  # nothing here was typed

    with Gateway(passwords={"tunnel": "correct horse"}).start() as gateway:
        with pytest.raises(AuthFailed, match="the given client key"):
            connect(gateway, generate_ed25519())
        good = Auth("correct horse")
        with connect(gateway, None, auth=good) as session:
            assert session.transport.is_authenticated()
        bad = Auth("wrong")
        with pytest.raises(AuthFailed, match="password \\(rejected\\)") as info:
            connect(gateway, None, auth=bad)
        host, port = gateway.address
        assert bad.rejections == [SecretName.password("tunnel", host, port)]
        assert str(bad.rejections[0]) == f"password:tunnel@{host}:{port}"
        assert "wrong" not in info.value.message


def test_load_authorized_keys(tmp_path: Path) -> None:
    keys = [generate_ed25519(), paramiko.ECDSAKey.generate()]
    file = tmp_path / "authorized_keys"
    file.write_text(
        "# comment\n\n"
        f"{keys[0].get_name()} {keys[0].get_base64()} alice@laptop\n"
        f"{keys[1].get_name()} {keys[1].get_base64()}\n"
        "ssh-ed25519 not-base64!!\n"
    )
    loaded = load_authorized_keys(file)
    assert [k.asbytes() for k in loaded] == [k.asbytes() for k in keys]
    with pytest.raises(ConfigError):
        load_authorized_keys(tmp_path / "missing")


def test_one_session_cannot_pile_up_forwards(builtin_gateway: BuiltIn) -> None:
    # An authenticated key may hold a few listeners, not hundreds (each costs a port and threads).
    from safetunnel.ssh._gwserver import MAX_FORWARDS_PER_SESSION

    gateway, key = builtin_gateway
    with connect(gateway, key) as session:
        replies = [
            session.global_request("tcpip-forward", ("localhost", 0))
            for _ in range(MAX_FORWARDS_PER_SESSION + 2)
        ]
    granted = [reply for reply in replies if reply is not None]
    assert len(granted) == MAX_FORWARDS_PER_SESSION
    assert replies[-1] is None
