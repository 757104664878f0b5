"""The paramiko engine's client side at its edges: a damaged known_hosts line, a server that
hangs up during the login, a connection lost during a key exchange. Each ends in one clear
answer (or the loss being noticed in time), never a traceback or a share left up."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from sshd import SSHD
from test_ssh_client import isolated, target_of  # noqa: F401 - isolated: autouse, no agent

from safetunnel.errors import SafetunnelError
from safetunnel.ssh.client import open_session
from safetunnel.ssh.hostkeys import HostKeyStore
from safetunnel.ssh.keys import generate_ed25519


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


@pytest.mark.sshd
def test_watchdog_detects_loss_during_a_rekey(sshd: SSHD, tmp_path: Path) -> None:
    """The network dies just as paramiko starts a rekey (it does so every 512 MiB): the ping
    blocks in paramiko's _send_user_message (clear_to_send_timeout, 30 s by default), then
    raises SSHException, which kills the watchdog thread without calling on_lost: the share
    stays "up" until its TTL."""
    store = HostKeyStore(sshd.known_hosts, tmp_path / "own" / "known_hosts")
    session = open_session(
        target_of(sshd),
        hostkeys=store,
        on_unknown_key=None,
        auth=None,
        client_key=sshd.client_key,
        timeout=5.0,
    )
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
        session.transport.packetizer._trigger_rekey()  # what 512 MiB of traffic does
        # About three keepalive intervals (1.5 s) are due; paramiko alone would wait 30 s.
        assert lost.wait(10.0), "the loss was not noticed within 10 s"
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(child.pid, signal.SIGCONT)
        session.close()
