"""connect through OpenSSH at its edges (real sshd, real CLI).

1. A stop signal while the *first* master logs in ends connect at once, with the signal's exit
   code: the login (30 s in an outage; unbounded while a password is asked at the terminal)
   no longer holds it.
2. A server banner longer than the log lines kept does not hide the host key the master
   accepted: connect no longer reports an interception (exit 4) for the key the ticket names.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from e2e import E2E, ShareProcess, recv_all
from services import echo
from sshd import SSHD, SSHDFactory

from safetunnel import tokens
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now

pytestmark = pytest.mark.sshd


def _ticket(e2e: E2E, server: SSHD, ssh_port: int, remote_port: int) -> str:
    token = tokens.generate()
    e2e.tokens.append(token)
    return Ticket(
        ssh_host="127.0.0.1",
        ssh_port=ssh_port,
        host_key=fingerprint(server.host_key),
        key_type=server.host_key.get_name(),
        remote_bind="127.0.0.1",
        remote_port=remote_port,
        protocol="tcp",
        expires_at=utc_now() + timedelta(minutes=5),
        token=token,
    ).encode()


def _masters(proc: ShareProcess) -> list[psutil.Process]:
    """connect's ssh processes; a short-lived child that ends while it is looked at (a version
    check, say) is skipped rather than hiding the others."""
    try:
        children = psutil.Process(proc.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.name() == "ssh":
                found.append(child)
    return found


def _children(proc: ShareProcess) -> list[tuple[int, str, str]]:
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found.append((child.pid, child.name(), child.status()))
    return found


def test_sigterm_while_the_first_master_logs_in_ends_connect_at_once(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    # A host that accepts TCP and never greets: the login hangs, as in an outage.
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        ticket = _ticket(e2e, shared_sshd, silent.getsockname()[1], 9)
        proc = e2e.connect(ticket, "--engine", "openssh", via=shared_sshd)
        deadline = time.monotonic() + 30
        while not _masters(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        logging_in = _masters(proc)
        # Seen twice in full CI runs, never alone: say what connect's children were, to tell a
        # child stuck between fork and exec (named like its parent) from none at all.
        assert logging_in, (proc.proc.poll(), proc.stderr, _children(proc))
        time.sleep(1.0)  # well inside the login
        proc.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = proc.wait(10)
        except Exception:
            code = None
        waited = time.monotonic() - started
        if code is None:
            proc.wait(40)
            waited = time.monotonic() - started
        assert code == 0, (
            f"SIGTERM during the first login: exit {proc.proc.returncode} after {waited:.0f}s; "
            f"stderr: {proc.stderr!r}"
        )
        assert not psutil.wait_procs(logging_in, timeout=10)[1]
    finally:
        silent.close()


def test_a_long_server_banner_is_not_taken_for_an_interception(
    e2e: E2E, sshd_factory: SSHDFactory, tmp_path: Path
) -> None:
    banner = tmp_path / "banner.txt"
    banner.write_text("".join(f"Authorised use only, line {i}\n" for i in range(450)))
    server = sshd_factory(extra_config=[f"Banner {banner}"])
    service = e2e.service(echo)
    share = e2e.share(
        service.port, "--protocol", "tcp", "--engine", "paramiko", via=server, ttl="60s"
    )
    share_started = e2e.started(share)
    try:
        proc = e2e.connect(share_started["ticket"], "--engine", "openssh", via=server)
        try:
            event = proc.next_event("listening", timeout=30)
        except AssertionError:
            pytest.fail(f"connect exit {proc.proc.poll()}: {proc.stderr}")
        port = int(event["local"].rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"ping"
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr
    finally:
        share.proc.send_signal(signal.SIGTERM)
        share.wait(20)
