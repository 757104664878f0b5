"""The paramiko engine's client side at its edges: a damaged known_hosts line, a server that
hangs up during the login, a connection lost during a key exchange, a close while a read or a
write waits on the socket. Each ends in one clear answer (or the loss being noticed in time),
never a traceback, a share left up or a thread that waits on."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sshd import SSHD
from test_ssh_client import isolated, target_of  # noqa: F401 - isolated: autouse, no agent

from safetunnel.errors import SafetunnelError
from safetunnel.ssh.client import open_session
from safetunnel.ssh.hostkeys import HostKeyStore
from safetunnel.ssh.keys import generate_ed25519
from safetunnel.ssh.session import SSHSession


@pytest.mark.parametrize(
    "hashed_name",
    [
        "|1|AAAA|AAAA",  # salt of 3 bytes: paramiko's hash_host asserts 20
        "|1|abc|def",  # bad base64 padding: binascii.Error
        "|1|" + base64.b64encode(b"s" * 20).decode() + "|\ufffd",  # non-ASCII: compare_digest
    ],
)
def test_odd_hashed_known_hosts_line_is_not_a_traceback(tmp_path: Path, hashed_name: str) -> None:
    """One malformed hashed line in ~/.ssh/known_hosts (OpenSSH skips it) must not crash every
    host-key check with a raw AssertionError/ValueError/TypeError."""
    key = generate_ed25519()
    user = tmp_path / "known_hosts"
    user.write_text(
        f"{hashed_name} ssh-ed25519 {key.get_base64()}\n"
        f"[127.0.0.1]:2222 ssh-ed25519 {key.get_base64()}\n",
        encoding="utf-8",
    )
    store = HostKeyStore(user, tmp_path / "own" / "known_hosts")
    try:
        state = store.check("127.0.0.1", 2222, key)
    except SafetunnelError:
        return  # a clear one-line error is acceptable
    assert state == "known"


@pytest.mark.sshd
def test_server_drop_during_hostkey_prompt_is_a_clear_error(sshd: SSHD, tmp_path: Path) -> None:
    """The user reads the fingerprint longer than sshd's LoginGraceTime; sshd hangs up; the
    user types yes. The login must end in a SafetunnelError, not paramiko's SSHException."""
    store = HostKeyStore(tmp_path / "empty", tmp_path / "own" / "known_hosts")

    def slow_yes(*_: object) -> bool:
        for child in psutil.Process(sshd.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.5)
        return True

    with pytest.raises(SafetunnelError):
        open_session(
            target_of(sshd),
            hostkeys=store,
            on_unknown_key=slow_yes,
            auth=None,
            client_key=sshd.client_key,
            timeout=5.0,
        ).close()


def _session(sshd: SSHD, tmp_path: Path) -> SSHSession:
    return open_session(
        target_of(sshd),
        hostkeys=HostKeyStore(sshd.known_hosts, tmp_path / "own" / "known_hosts"),
        on_unknown_key=None,
        auth=None,
        client_key=sshd.client_key,
        timeout=5.0,
    )


@pytest.mark.sshd
def test_watchdog_detects_loss_during_a_rekey(sshd: SSHD, tmp_path: Path) -> None:
    """The network dies just as paramiko starts a rekey (it does so every 512 MiB): the ping
    blocks in paramiko's _send_user_message (clear_to_send_timeout, 30 s by default), then
    raises SSHException, which kills the watchdog thread without calling on_lost: the share
    stays "up" until its TTL."""
    session = _session(sshd, tmp_path)
    lost = threading.Event()
    session.start_watchdog(0.5, lost.set)
    children = psutil.Process(sshd.pid).children(recursive=True)
    try:
        assert not lost.wait(1.2)
        stopped = 0
        for child in children:  # a pre-authentication helper may have exited meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGSTOP)
                stopped += 1
        assert stopped, "no sshd process of the session to freeze"
        # What 512 MiB of traffic makes the transport thread do; by hand here, as that thread
        # acts on it when the next packet arrives, and none does from a frozen server.
        session.transport._send_kex_init()
        # About three keepalive intervals (1.5 s) are due; paramiko alone would wait 30 s.
        assert lost.wait(10.0), "the loss was not noticed within 10 s"
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(child.pid, signal.SIGCONT)
        session.close()


@pytest.mark.sshd
def test_a_logged_in_session_waits_on_its_socket_without_a_timeout(
    sshd: SSHD, tmp_path: Path
) -> None:
    """With paramiko's 0.1 s socket timeout, every read and write of a share's connection is a
    poll() first (a sixth of its CPU per forwarded connection)."""
    session = _session(sshd, tmp_path)
    try:
        assert session.transport.sock.gettimeout() is None
    finally:
        session.close()


@pytest.mark.sshd
def test_closing_an_idle_session_ends_its_transport_thread(sshd: SSHD, tmp_path: Path) -> None:
    """The transport thread waits in recv() on a quiet connection; only a shutdown wakes it."""
    session = _session(sshd, tmp_path)
    time.sleep(0.5)  # the server's messages after the login are read; the thread waits
    session.close()  # joins the transport thread for at most its 5 s timeout
    assert not session.transport.is_alive()


@contextlib.contextmanager
def _stuck_writer(
    sshd: SSHD, session: SSHSession
) -> Iterator[tuple[threading.Thread, list[BaseException]]]:
    """sshd's processes frozen, and a thread that writes to the session until a write fails:
    once the connection's buffers are full, it waits in send(). Thawed and closed at the end."""
    children = psutil.Process(sshd.pid).children(recursive=True)
    ended: list[BaseException] = []

    def write() -> None:
        try:
            while True:
                session.transport.send_ignore(32 * 1024)
        except Exception as exc:  # what ends the write: a close or the connection's end
            ended.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    try:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGSTOP)
        writer.start()
        yield writer, ended
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(child.pid, signal.SIGCONT)
        session.close()
        writer.join(10.0)


@pytest.mark.sshd
def test_closing_wakes_a_write_stuck_behind_a_frozen_server(sshd: SSHD, tmp_path: Path) -> None:
    """A server that stops reading fills the socket's buffers; the thread writing then waits in
    send(). A close (what the keepalive watchdog does on a loss) must end that wait."""
    session = _session(sshd, tmp_path)
    with _stuck_writer(sshd, session) as (writer, ended):
        time.sleep(1.0)  # long enough to fill a loopback connection's buffers many times over
        assert writer.is_alive(), f"the write did not get stuck: {ended}"
        session.close()
        writer.join(10.0)
        assert not writer.is_alive(), "the close left a write waiting"
        assert ended


@pytest.mark.sshd
def test_watchdog_detects_loss_while_a_write_is_stuck_on_a_full_buffer(
    sshd: SSHD, tmp_path: Path
) -> None:
    """A download fills the socket's buffers and the network dies: the relay's write waits in
    send() holding paramiko's write lock, and the keepalive ping waits behind it. Without a
    bound on unacknowledged data both waited for TCP to give up (about 15 minutes)."""
    session = _session(sshd, tmp_path)
    lost = threading.Event()
    session.start_watchdog(0.5, lost.set)
    with _stuck_writer(sshd, session):
        # About three keepalive intervals (1.5 s), then the kernel's own bound on top.
        assert lost.wait(15.0), "the loss was not noticed within 15 s"


@pytest.mark.sshd
def test_closing_a_forwarding_session_on_a_dead_connection_raises_nothing(
    sshd: SSHD, tmp_path: Path
) -> None:
    """Ctrl-C during a stall: close() cancels the forward first, and that request waits behind
    a write stuck on the frozen server until the kernel ends the connection. paramiko's error
    then must not escape close(): the share's teardown would stop half way."""
    session = _session(sshd, tmp_path)
    session.forward("127.0.0.1", 0, lambda stream: None)
    session.transport.bound_unacknowledged(1.0)
    with _stuck_writer(sshd, session):
        time.sleep(0.5)  # the buffers fill; the writer waits in send()
        session.close()
        assert not session.transport.is_alive()
