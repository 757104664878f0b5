"""End to end: ``connect`` through OpenSSH's own client, pinned to the ticket's host key.

Real sshd on loopback. The recipient's ssh_config routes the share's host through a ProxyJump
host, which the paramiko engine cannot follow (it refuses by name) and OpenSSH can: the jump
host's log shows the hop. The host key is the ticket's alone: the recipient's known_hosts
knows only the jump host, and a ticket naming another key stops connect with exit 4 before any
credential is offered. No token or ticket is ever on a process's argv, and ``kill -9`` of
connect leaves no ssh behind. A master that died is replaced at the next connection; when no new
one can log in, connect ends with exit 8.
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import timedelta
from typing import Any

import psutil
import pytest
import test_e2e_jump_host as jump_host
from conftest import Sandbox
from e2e import E2E, ShareProcess, known_hosts_line, recv_all, wait_until
from services import echo
from sshd import SSHD, SSHDFactory

from safetunnel import tokens
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now

pytestmark = pytest.mark.sshd


def route_through(sandbox: Sandbox, jump: SSHD, target: SSHD) -> None:
    """``inner`` is the target, reached only through ``jump``; only the jump host is known."""
    jump_host.route_through(sandbox, jump, target)
    ssh_dir = sandbox.home / ".ssh"
    (ssh_dir / "known_hosts").write_text(known_hosts_line("127.0.0.1", jump.port, jump.host_key))


def ticket_for(e2e: E2E, target: SSHD, port: int, host: str = "inner", **changes: Any) -> str:
    token = tokens.generate()
    e2e.tokens.append(token)
    values: dict[str, Any] = {
        "ssh_host": host,
        "ssh_port": None,
        "host_key": fingerprint(target.host_key),
        "key_type": target.host_key.get_name(),
        "remote_bind": "127.0.0.1",
        "remote_port": port,
        "protocol": "tcp",
        "expires_at": utc_now() + timedelta(minutes=5),
        "token": token,
    }
    return Ticket(**{**values, **changes}).encode()


def local_port(proc: ShareProcess) -> int:
    return int(proc.next_event("listening")["local"].rpartition(":")[2])


def raw_share(e2e: E2E, server: SSHD) -> tuple[ShareProcess, dict[str, Any]]:
    """A raw-TCP echo share on ``server``, started as the sharer would."""
    service = e2e.service(echo)
    share = e2e.share(service.port, "--protocol", "tcp", via=server, ttl="60s")
    return share, e2e.started(share)


def stop(proc: ShareProcess) -> None:
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr


def test_connect_reaches_a_share_through_a_proxyjump_alias(
    e2e: E2E, sandbox: Sandbox, sshd_factory: SSHDFactory
) -> None:
    jump, target = sshd_factory(), sshd_factory()
    share, started = raw_share(e2e, target)
    route_through(sandbox, jump, target)
    # The sharer named the host by its address; the recipient reaches it as "inner".
    ticket = ticket_for(e2e, target, started["remote_port"], token=started["token"])

    proc = e2e.connect(ticket, via=target)
    port = local_port(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"over the hop")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"over the hop"
    assert "direct-tcpip" in jump.log_text() and f"port {target.port}" in jump.log_text()
    stop(proc)
    stop(share)


def test_the_paramiko_engine_refuses_the_proxyjump_alias_by_name(
    e2e: E2E, sandbox: Sandbox, sshd_factory: SSHDFactory
) -> None:
    jump, target = sshd_factory(), sshd_factory()
    route_through(sandbox, jump, target)
    proc = e2e.connect(ticket_for(e2e, target, 47999), "--engine", "paramiko", via=target)
    assert proc.wait(30) == 1
    assert "ProxyJump" in proc.stderr and "--engine openssh" in proc.stderr
    assert "Accepted publickey" not in jump.log_text() + target.log_text()


def test_a_host_key_other_than_the_tickets_stops_openssh_with_exit_4(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    other = fingerprint(shared_sshd.client_key)  # a real key, just not this host's
    host = f"{shared_sshd.user}@127.0.0.1"
    made = ticket_for(e2e, shared_sshd, 47999, host=host, host_key=other, ssh_port=shared_sshd.port)
    proc = e2e.connect(made, "--engine", "openssh", via=shared_sshd)
    assert proc.wait(30) == 4, proc.stderr
    assert "but the ticket names" in proc.stderr and other in proc.stderr
    assert fingerprint(shared_sshd.host_key) in proc.stderr  # what the host did show
    assert proc.stdout == ""  # nothing ever listened
    assert "Accepted publickey" not in shared_sshd.log_text()  # no credential was offered


def test_no_secret_on_any_argv_and_kill_9_leaves_no_ssh(e2e: E2E, shared_sshd: SSHD) -> None:
    share, started = raw_share(e2e, shared_sshd)
    proc = e2e.connect(started["ticket"], "--engine", "openssh", via=shared_sshd)
    port = local_port(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        for process in psutil.process_iter(["cmdline"]):
            words = " ".join(process.info["cmdline"] or [])
            assert started["token"] not in words and started["ticket"] not in words
    children = psutil.Process(proc.proc.pid).children(recursive=True)
    assert any(child.name() == "ssh" for child in children), children
    os.kill(proc.proc.pid, signal.SIGKILL)
    proc.wait(20)
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
    stop(share)


def masters_of(proc: ShareProcess) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(proc.proc.pid).children() if c.name() == "ssh"]
    except psutil.NoSuchProcess:
        return []  # connect has exited: its masters went with it


def echoes(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        return recv_all(client) == data


@pytest.mark.fault
def test_a_lost_master_is_replaced_at_the_next_connection(e2e: E2E, shared_sshd: SSHD) -> None:
    share, started = raw_share(e2e, shared_sshd)
    proc = e2e.connect(started["ticket"], "--engine", "openssh", via=shared_sshd)
    port = local_port(proc)
    assert echoes(port, b"before")
    first = masters_of(proc)
    assert len(first) == 1, first
    first[0].kill()  # what the master does itself when its keepalives go unanswered
    first[0].wait(10)
    assert echoes(port, b"after the loss")  # a new master, pinned to the same key
    second = masters_of(proc)
    assert len(second) == 1 and second[0].pid != first[0].pid, second
    assert proc.proc.poll() is None  # connect goes on
    stop(proc)
    assert not psutil.wait_procs(second, timeout=20)[1]  # and its master goes with it
    stop(share)


def connect_then_lose(e2e: E2E, server: SSHD) -> tuple[ShareProcess, int]:
    """connect through OpenSSH to a share on ``server``; then the share ends, connect's master
    dies (as after unanswered keepalives: connect notices at its next connection) and the host
    is gone. Returns connect and its local port."""
    share, started = raw_share(e2e, server)
    proc = e2e.connect(started["ticket"], "--engine", "openssh", via=server)
    port = local_port(proc)
    stop(share)
    masters = masters_of(proc)
    for master in masters:
        master.kill()
    psutil.wait_procs(masters, timeout=10)
    server.stop()
    return proc, port


@pytest.mark.fault
def test_a_master_that_cannot_be_replaced_ends_connect_with_exit_8(
    e2e: E2E, sshd_factory: SSHDFactory
) -> None:
    server = sshd_factory()
    proc, port = connect_then_lose(e2e, server)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.settimeout(30)
        assert client.recv(1) == b""  # closed: nothing could carry it
    assert proc.wait(30) == 8, proc.stderr
    assert "was lost and could not be reopened" in proc.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_a_share_that_has_ended_is_said_on_both_engines(
    e2e: E2E, shared_sshd: SSHD, engine: str
) -> None:
    share, started = raw_share(e2e, shared_sshd)
    proc = e2e.connect(started["ticket"], "--engine", engine, via=shared_sshd)
    port = local_port(proc)
    assert echoes(port, b"while it runs")
    stop(share)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.settimeout(30)
        assert client.recv(1) == b""  # nothing to reach
    wait_until(
        lambda: any("could not reach the share" in line for line in proc.stderr_lines),
        what="connect to say the share could not be reached",
    )
    notice = next(line for line in proc.stderr_lines if "could not reach the share" in line)
    assert f"127.0.0.1:{started['remote_port']}" in notice and "it may have ended" in notice
    assert proc.proc.poll() is None  # one connection failed; connect goes on
    stop(proc)


@pytest.mark.fault
def test_stopping_connect_while_a_new_master_logs_in_ends_at_once(
    e2e: E2E, sshd_factory: SSHDFactory
) -> None:
    """During an outage a new master's login waits up to its timeout (30 s); a SIGTERM then
    must not wait with it."""
    server = sshd_factory()
    proc, port = connect_then_lose(e2e, server)
    # The host's port now accepts and never answers: a login there hangs, as in an outage.
    silent = socket.create_server(("127.0.0.1", server.port))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            wait_until(lambda: bool(masters_of(proc)), what="a new master to start its login")
            logging_in = masters_of(proc)
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, proc.stderr  # not after the 30 s login timeout
            client.settimeout(10)
            assert client.recv(1) == b""
    finally:
        silent.close()
    assert not psutil.wait_procs(logging_in, timeout=10)[1]  # that master went with it
