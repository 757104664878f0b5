"""The OpenSSH engine against the real sshd: the control master, the gate socket, the streams, the
mapping of OpenSSH's failures to exit codes; and the engine choice (--engine, config.toml)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import Sandbox
from e2e import assert_port_released, known_hosts_line, port_open, wait_until
from sshd import SSHD

from safetunnel.errors import (
    AuthFailed,
    ConfigError,
    ForwardRefused,
    HostKeyChanged,
    HostKeyUnknown,
)
from safetunnel.hosts.config import load_config
from safetunnel.registry.records import TunnelRecord
from safetunnel.sharing import engines, events
from safetunnel.ssh import openssh
from safetunnel.ssh.engine import ByteStream
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.openssh import engine as engine_module
from safetunnel.ssh.openssh.connect import open_openssh_session
from safetunnel.ssh.openssh.engine import OpenSSHSession
from safetunnel.ssh.target import SSHTarget


def target_of(server: SSHD, identity: Path | None = None) -> SSHTarget:
    key = str(identity or server.client_key_path)
    return SSHTarget(server.host, server.port, server.user, (key,))


def open_with(server: SSHD, known_hosts: Path, identity: Path | None = None) -> OpenSSHSession:
    return open_openssh_session(
        target_of(server, identity), known_hosts=[known_hosts], on_unknown_key=None, keepalive=5
    )


@pytest.fixture
def session(sandbox: Sandbox, shared_sshd: SSHD) -> Iterator[OpenSSHSession]:
    opened = open_with(shared_sshd, shared_sshd.known_hosts)
    yield opened
    opened.close()


class Streams:
    """Collects the streams the session delivers."""

    def __init__(self) -> None:
        self.got: list[ByteStream] = []
        self.arrived = threading.Event()

    def __call__(self, stream: ByteStream) -> None:
        self.got.append(stream)
        self.arrived.set()


pytestmark = pytest.mark.sshd


def test_the_master_names_the_key_it_accepted(session: OpenSSHSession, shared_sshd: SSHD) -> None:
    assert session.host_key_state == "pinned"
    assert session.fingerprint == fingerprint(shared_sshd.host_key)
    assert session.key_type == "ssh-ed25519"
    assert session.is_active()


def test_a_forward_delivers_streams_from_a_private_socket(session: OpenSSHSession) -> None:
    streams = Streams()
    listener = session.forward("127.0.0.1", 0, streams)
    gate = next(session._sockets.glob("g-*.sock"))
    assert stat.S_IMODE(gate.stat().st_mode) == 0o600
    assert stat.S_IMODE(session._sockets.stat().st_mode) == 0o700
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as client:
        client.sendall(b"hello")
        assert streams.arrived.wait(5)
        stream = streams.got[0]
        assert stream.origin == ("127.0.0.1", 0)  # the listen address: OpenSSH hides the client
        assert stream.read(5, timeout=5) == b"hello"
        with pytest.raises(TimeoutError):
            stream.read(5, timeout=0.05)
        stream.write_all(b"world")
        stream.half_close()
        client.settimeout(5)
        assert client.recv(5) == b"world"
        assert client.recv(5) == b""  # the half close reached the client
        client.sendall(b"more")  # and the other direction still flows
        assert stream.read(4, timeout=5) == b"more"
        stream.close()
        stream.close()  # idempotent
    listener.close()
    assert_port_released(listener.port)
    assert list(session._sockets.glob("g-*.sock")) == []


def test_a_forward_whose_answer_never_shows_in_the_log_is_refused_and_cancelled(
    session: OpenSSHSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the server widened the bind is read from ssh's log; a forward whose answer
    cannot be found there is not served on a guess (exit 6), and nothing stays listening."""
    monkeypatch.setattr(engine_module, "FORWARD_ANSWERED", "a line ssh never writes")
    monkeypatch.setattr(engine_module, "ANSWER_WAIT", 0.2)
    with pytest.raises(ForwardRefused, match="could not confirm"):
        session.forward("127.0.0.1", 0, Streams())
    assert list(session._sockets.glob("g-*.sock")) == []


def test_a_session_forwards_once(session: OpenSSHSession) -> None:
    session.forward("127.0.0.1", 0, Streams())
    with pytest.raises(Exception, match="already carries a forward"):
        session.forward("127.0.0.1", 0, Streams())


def test_closing_stops_the_master_and_calls_no_loss(sandbox: Sandbox, shared_sshd: SSHD) -> None:
    opened = open_with(shared_sshd, shared_sshd.known_hosts)
    lost = threading.Event()
    opened.start_watchdog(5, lost.set)
    listener = opened.forward("127.0.0.1", 0, Streams())
    assert port_open(listener.port)
    opened.close()
    assert not opened.is_active()
    assert_port_released(listener.port)
    assert list(opened._sockets.glob("*.sock")) == []
    assert not lost.is_set()


def test_the_master_exiting_is_the_loss(sandbox: Sandbox, shared_sshd: SSHD) -> None:
    opened = open_with(shared_sshd, shared_sshd.known_hosts)
    lost = threading.Event()
    opened.start_watchdog(5, lost.set)
    opened._master._process.terminate()  # what a dead peer makes OpenSSH do
    assert lost.wait(10)
    assert not opened.is_active()
    opened.close()


def test_an_unknown_host_key_is_exit_4(sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown):
        open_with(shared_sshd, empty)


def test_a_changed_host_key_is_exit_4(sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(shared_sshd.client_key_path))
    wrong = tmp_path / "known_hosts"
    wrong.write_text(known_hosts_line(shared_sshd.host, shared_sshd.port, other))
    with pytest.raises(HostKeyChanged):
        open_with(shared_sshd, wrong)


def test_a_refused_login_is_exit_5(sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(AuthFailed):
        open_with(shared_sshd, shared_sshd.known_hosts, identity=stranger)


def test_nothing_is_left_running_after_a_failed_login(
    sandbox: Sandbox, shared_sshd: SSHD, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown):
        open_with(shared_sshd, empty)
    sockets = sandbox.state_dir / "ssh"
    wait_until(lambda: list(sockets.glob("*.sock")) == [], what="the control socket to go")


# -- choosing the engine ---------------------------------------------------------------------------


def test_the_builtin_gateway_is_always_paramiko(sandbox: Sandbox) -> None:
    config = load_config()
    assert engines.choose_engine("openssh", config, builtin=True) == "paramiko"


def test_engine_comes_from_the_option_then_config_toml(sandbox: Sandbox) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    (sandbox.config_dir / "config.toml").write_text('engine = "openssh"\n')
    config = load_config()
    assert config.engine == "openssh"
    assert engines.choose_engine(None, config, builtin=False) == "openssh"
    assert engines.choose_engine("paramiko", config, builtin=False) == "paramiko"


def test_auto_prefers_openssh_and_falls_back_to_paramiko_below_8_7(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = load_config()
    assert engines.choose_engine("auto", config, builtin=False) == "openssh"
    assert engines.choose_engine(None, config, builtin=False) == "openssh"
    old = tmp_path / "ssh"
    old.write_text("#!/bin/sh\necho 'OpenSSH_8.6p1, OpenSSL 1.1.1' >&2\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    openssh.openssh_version.cache_clear()
    try:
        assert openssh.openssh_version() == (8, 6)
        assert engines.choose_engine("auto", load_config(), builtin=False) == "paramiko"
        with pytest.raises(ConfigError, match=r"ssh is OpenSSH 8\.6"):
            engines.choose_engine("openssh", load_config(), builtin=False)
    finally:
        openssh.openssh_version.cache_clear()


def test_openssh_without_a_usable_client_is_refused_by_name(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    openssh.openssh_version.cache_clear()
    try:
        with pytest.raises(ConfigError, match="--engine openssh needs OpenSSH"):
            engines.choose_engine("openssh", load_config(), builtin=False)
        assert engines.choose_engine("auto", load_config(), builtin=False) == "paramiko"
    finally:
        openssh.openssh_version.cache_clear()


def test_the_installed_client_is_usable() -> None:
    version = openssh.openssh_version()
    assert version is not None and version >= openssh.MIN_VERSION
    assert openssh.usable()


def test_an_unknown_engine_in_config_toml_is_refused(sandbox: Sandbox) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    (sandbox.config_dir / "config.toml").write_text('engine = "putty"\n')
    with pytest.raises(ConfigError, match="engine must be one of"):
        load_config()


def test_the_started_event_names_the_engine_last() -> None:
    base = dict(
        id="st-1a2b3c",
        pid=1,
        local="127.0.0.1:1",
        ssh_host="a@b:22",
        remote_bind="127.0.0.1",
        remote_port=2,
        protocol="auto",
        token=None,
        started_at="x",
        expires_at="y",
        url="http://127.0.0.1:2/",
    )
    assert "engine" not in events.Started(**base).to_json()  # type: ignore[arg-type]
    data = events.Started(**base, engine="openssh").to_json()  # type: ignore[arg-type]
    assert list(data)[-1] == "engine" and data["engine"] == "openssh"


def test_a_record_without_an_engine_reads_as_paramiko() -> None:
    record = TunnelRecord(
        id="st-1a2b3c",
        pid=1,
        pid_start_time=0.0,
        local="127.0.0.1:1",
        ssh_host="a@b:22",
        remote_bind="127.0.0.1",
        remote_port=2,
        protocol="auto",
        started_at="x",
        expires_at="y",
        token_hash_prefix="abcd1234",
    )
    data = record.to_dict()
    del data["engine"]
    assert TunnelRecord.from_dict(data).engine == "paramiko"


def test_stale_sockets_go(
    sandbox: Sandbox, shared_sshd: SSHD, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sockets a share killed with kill -9 left behind are removed by the next share."""
    short = Path(tempfile.mkdtemp(prefix="st-"))  # pytest's paths are too long for sockets
    monkeypatch.setenv("SAFETUNNEL_STATE_DIR", str(short))
    sockets = short / "ssh"
    sockets.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = sockets / f"m-{dead.pid}-deadbeef.sock"
    live = sockets / f"g-{os.getpid()}-cafe0000.sock"
    stale.write_text("")
    live.write_text("")
    open_with(shared_sshd, shared_sshd.known_hosts).close()
    assert not stale.exists()
    assert live.exists()  # its process still runs
    shutil.rmtree(short)
