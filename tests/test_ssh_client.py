from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e import port_refused
from sshd import SSHD, SSHDFactory

from safetunnel.errors import (
    AuthFailed,
    ConfigError,
    ForwardRefused,
    HostKeyChanged,
    HostKeyUnknown,
)
from safetunnel.secrets.names import SecretName
from safetunnel.ssh._transport import DISABLED_ALGORITHMS
from safetunnel.ssh.client import SSHSession, open_session
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.keys import generate_ed25519
from safetunnel.ssh.target import SSHTarget

pytestmark = pytest.mark.sshd


class FakeAuth:
    def __init__(self, passphrase: str | None = None, password: str | None = None) -> None:
        self._passphrase, self._password = passphrase, password
        self.asked: list[str] = []
        self.rejections: list[SecretName] = []

    def passphrase(self, key_path: str) -> str | None:
        self.asked.append(f"passphrase:{key_path}")
        refused = SecretName.passphrase(key_path) in self.rejections
        return None if refused else self._passphrase

    def password(self, target: SSHTarget) -> str | None:
        self.asked.append("password")
        refused = any(name.kind == "password" for name in self.rejections)
        return None if refused else self._password

    def rejected(self, name: SecretName) -> None:
        self.rejections.append(name)

    def wrong(self, name: SecretName) -> bool:
        return name in self.rejections


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No agent and an empty HOME, so only what a test passes can authenticate."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def target_of(sshd: SSHD, *files: Path) -> SSHTarget:
    return SSHTarget(sshd.host, sshd.port, sshd.user, tuple(str(f) for f in files), label="fx")


def store_of(sshd: SSHD, tmp_path: Path) -> HostKeyStore:
    return HostKeyStore(sshd.known_hosts, tmp_path / "own" / "known_hosts")


def connect(sshd: SSHD, tmp_path: Path, **kwargs: object) -> SSHSession:
    options: dict[str, object] = {
        "hostkeys": store_of(sshd, tmp_path),
        "on_unknown_key": None,
        "auth": None,
        "client_key": sshd.client_key,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return open_session(target_of(sshd), **options)  # type: ignore[arg-type]


def test_session_with_pinned_key(sshd: SSHD, tmp_path: Path) -> None:
    with connect(sshd, tmp_path) as session:
        assert session.transport.is_authenticated()
        assert session.host_key_state == "pinned"
        assert session.key_type == "ssh-ed25519"
        assert session.fingerprint == fingerprint(sshd.host_key)
        assert session.strict_kex  # OpenSSH >= 9.6p1/9.2 Debian backport: kex-strict agreed
        assert "cbc" not in session.transport.remote_cipher
        assert session.transport.remote_mac.startswith("hmac-sha2") or "gcm" in (
            session.transport.remote_cipher
        )
        # what paramiko offers in KEXINIT (SecurityOptions shows the list before filtering)
        offered: Any = session.transport
        assert not set(DISABLED_ALGORITHMS["ciphers"]) & set(offered.preferred_ciphers)
        assert not set(DISABLED_ALGORITHMS["macs"]) & set(offered.preferred_macs)
        assert "hmac-sha1" in DISABLED_ALGORITHMS["macs"]
    assert not session.transport.is_active()
    session.close()


def test_unknown_key_without_prompt(sshd: SSHD, tmp_path: Path) -> None:
    store = HostKeyStore(tmp_path / "empty", tmp_path / "own" / "known_hosts")
    with pytest.raises(HostKeyUnknown) as info:
        connect(sshd, tmp_path, hostkeys=store)
    assert fingerprint(sshd.host_key) in info.value.message
    assert info.value.hint and "safetunnel hosts trust fx" in info.value.hint
    assert info.value.exit_code == 4


def test_unknown_key_trusted_by_prompt_is_pinned(sshd: SSHD, tmp_path: Path) -> None:
    store = HostKeyStore(tmp_path / "empty", tmp_path / "own" / "known_hosts")
    seen: list[tuple[str, str]] = []

    def prompt(target: SSHTarget, algorithm: str, fp: str) -> bool:
        seen.append((algorithm, fp))
        return True

    with connect(sshd, tmp_path, hostkeys=store, on_unknown_key=prompt) as session:
        assert session.host_key_state == "newly-trusted"
    assert seen == [("ssh-ed25519", fingerprint(sshd.host_key))]
    with connect(sshd, tmp_path, hostkeys=store) as session:
        assert session.host_key_state == "pinned"
    with pytest.raises(HostKeyUnknown, match="not trusted"):
        connect(
            sshd,
            tmp_path,
            hostkeys=HostKeyStore(tmp_path / "e", tmp_path / "o2"),
            on_unknown_key=lambda *a: False,
        )


def test_changed_key_refused(sshd: SSHD, tmp_path: Path) -> None:
    other = generate_ed25519()
    user = tmp_path / "known_hosts"
    user.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other.get_base64()}\n")
    before = user.read_bytes()
    with pytest.raises(HostKeyChanged) as info:
        connect(
            sshd,
            tmp_path,
            hostkeys=HostKeyStore(user, tmp_path / "own"),
            on_unknown_key=lambda *a: True,
        )
    assert fingerprint(other) in info.value.message
    assert fingerprint(sshd.host_key) in info.value.message
    assert user.read_bytes() == before
    assert not (tmp_path / "own").exists()


def test_expected_key_for_builtin_mode(sshd: SSHD, tmp_path: Path) -> None:
    with connect(sshd, tmp_path, hostkeys=None, expected_key=sshd.host_key) as session:
        assert session.host_key_state == "builtin"
    with pytest.raises(HostKeyChanged):
        connect(sshd, tmp_path, hostkeys=None, expected_key=generate_ed25519())


def test_wrong_key_is_auth_failed(sshd: SSHD, tmp_path: Path) -> None:
    auth = FakeAuth()
    with pytest.raises(AuthFailed) as info:
        connect(sshd, tmp_path, client_key=generate_ed25519(), auth=auth)
    assert "the given client key (rejected)" in info.value.message
    assert info.value.hint and "safetunnel creds set fx" in info.value.hint
    assert info.value.exit_code == 5
    assert auth.asked == []  # sshd allows only publickey: no pointless password prompt


def test_identity_file_and_default_identity(sshd: SSHD, tmp_path: Path, isolated: Path) -> None:
    target = target_of(sshd, sshd.client_key_path)
    with open_session(
        target, hostkeys=store_of(sshd, tmp_path), on_unknown_key=None, auth=None
    ) as session:
        assert session.transport.is_authenticated()
    (isolated / ".ssh").mkdir()
    shutil.copy(sshd.client_key_path, isolated / ".ssh" / "id_ed25519")
    with open_session(
        target_of(sshd), hostkeys=store_of(sshd, tmp_path), on_unknown_key=None, auth=None
    ) as session:
        assert session.transport.is_authenticated()


def test_encrypted_key_unlocked_by_auth_source(sshd: SSHD, tmp_path: Path) -> None:
    key = tmp_path / "enc_key"
    shutil.copy(sshd.client_key_path, key)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "s3cret-phrase", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    target = target_of(sshd, key)
    auth = FakeAuth(passphrase="s3cret-phrase")
    with open_session(
        target, hostkeys=store_of(sshd, tmp_path), on_unknown_key=None, auth=auth
    ) as session:
        assert session.transport.is_authenticated()
    assert auth.asked == [f"passphrase:{key}"] and auth.rejections == []
    wrong = FakeAuth(passphrase="nope")
    with pytest.raises(AuthFailed, match="wrong passphrase") as info:
        open_session(target, hostkeys=store_of(sshd, tmp_path), on_unknown_key=None, auth=wrong)
    assert wrong.rejections == [SecretName.passphrase(str(key))]
    assert "nope" not in info.value.message
    with pytest.raises(AuthFailed, match="no passphrase available"):
        open_session(
            target, hostkeys=store_of(sshd, tmp_path), on_unknown_key=None, auth=FakeAuth()
        )


def echo_handler(threads: list[threading.Thread]) -> Callable[[ByteStream], None]:
    def serve(stream: ByteStream) -> None:
        try:
            while data := stream.read(65536):
                stream.write_all(data.upper())
        finally:
            stream.close()

    def handler(stream: ByteStream) -> None:
        thread = threading.Thread(target=serve, args=(stream,), name="test-echo")
        threads.append(thread)
        thread.start()  # hand off: never block paramiko's transport thread

    return handler


def test_forward_round_trip_and_close_frees_port(sshd: SSHD, tmp_path: Path) -> None:
    threads: list[threading.Thread] = []
    session = connect(sshd, tmp_path)
    port = session.forward("localhost", 0, echo_handler(threads)).port
    assert port > 0
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(b"hello through sshd")
        assert sock.recv(100) == b"HELLO THROUGH SSHD"
    session.close()
    session.close()
    for thread in threads:
        thread.join(5)
    assert port_refused(port)


def test_empty_bind_is_never_requested(sshd: SSHD, tmp_path: Path) -> None:
    with connect(sshd, tmp_path) as session, pytest.raises(ConfigError):
        session.forward("", 0, lambda *a: None)


def test_gatewayports_override_detected(sshd_factory: SSHDFactory, tmp_path: Path) -> None:
    sshd = sshd_factory(gateway_ports=True)
    with connect(sshd, tmp_path) as session:
        with pytest.raises(ForwardRefused, match="ALL interfaces") as info:
            session.forward("localhost", 0, lambda *a: None)
        assert info.value.exit_code == 6
        port = int(re.search(r"bound port (\d+)", info.value.message).group(1))  # type: ignore[union-attr]
        assert port_refused(port)  # cancelled before raising
        assert 'Forwarding listen address "localhost" overridden by server GatewayPorts' in (
            info.value.message
        )
        threads: list[threading.Thread] = []
        wide = session.forward("localhost", 0, echo_handler(threads), allow_wildcard=True).port
        assert wide > 0
    for thread in threads:
        thread.join(5)


def test_public_request_on_gatewayports_yes_is_not_flagged(
    sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    sshd = sshd_factory(gateway_ports=True)
    with connect(sshd, tmp_path) as session:
        assert session.forward("0.0.0.0", 0, lambda *a: None).port > 0


def test_permitlisten_restricts_port(sshd_factory: SSHDFactory, tmp_path: Path) -> None:
    options = 'restrict,port-forwarding,permitlisten="localhost:24123"'
    sshd = sshd_factory(authorized_options=options)
    with connect(sshd, tmp_path) as session, pytest.raises(ForwardRefused) as info:
        session.forward("localhost", 24124, lambda *a: None)
    assert "refused to listen on localhost:24124" in info.value.message
    with connect(sshd, tmp_path) as session:
        assert session.forward("localhost", 24123, lambda *a: None).port == 24123
    assert port_refused(24123)


def test_watchdog_detects_a_frozen_server(sshd: SSHD, tmp_path: Path) -> None:
    import os
    import signal
    import time

    import psutil

    lost = threading.Event()
    calls: list[float] = []

    def on_lost() -> None:
        calls.append(time.monotonic())
        lost.set()

    session = connect(sshd, tmp_path)
    session.start_watchdog(0.5, on_lost)
    assert not lost.wait(1.6)  # a live server answers every ping
    children = psutil.Process(sshd.pid).children(recursive=True)
    assert children, "expected sshd's per-connection processes"
    for child in children:
        os.kill(child.pid, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        assert lost.wait(4.0)
        assert calls[0] - frozen_at < 2.5  # about 3 intervals after the last reply
        session.close()  # must not hang on the frozen peer
        assert time.monotonic() - frozen_at < 8
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(child.pid, signal.SIGCONT)
    time.sleep(0.6)
    assert len(calls) == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("safetunnel-keepalive")]


def test_watchdog_fires_when_transport_dies(sshd: SSHD, tmp_path: Path) -> None:
    lost = threading.Event()
    session = connect(sshd, tmp_path)
    session.start_watchdog(0.3, lost.set)
    sshd.stop()  # kills the per-connection child: the transport sees EOF
    assert lost.wait(3.0)
    session.close()
