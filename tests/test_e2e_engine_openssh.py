"""End to end through the console script with ``--engine openssh``: OpenSSH's client carries the
forward, the gate runs behind a unix socket, and the share keeps the safety contract (token
gate, TTL, teardown, no ssh left behind, widened or refused forwards are exit 6, SSH loss is
exit 8)."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator

import psutil
import pytest
from e2e import E2E, assert_port_released, http_status, port_open, wait_until
from services import echo, http_keepalive
from sshd import SSHD, SSHDFactory

pytestmark = pytest.mark.sshd

ENGINE = ("--engine", "openssh")


def ssh_children(pid: int) -> list[psutil.Process]:
    """The live ``ssh`` processes under ``pid``."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() == "ssh" and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


def gone(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.status() != psutil.STATUS_ZOMBIE:
                return False
    return True


def test_openssh_share_gates_with_the_token_and_ends_at_its_ttl(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, *ENGINE, ttl="3s", via=shared_sshd)
    started = e2e.started(proc)
    assert started["engine"] == "openssh"
    # added last: the older keys keep their order
    assert list(started)[-2:] == ["engine", "ticket"]
    port = started["remote_port"]
    assert http_status(port, None) == 401
    assert http_status(port, started["token"]) == 200
    masters = ssh_children(proc.proc.pid)
    assert masters, "the share runs no ssh process"
    for master in masters:  # neither the token nor its hash prefix on any ssh command line
        assert started["token"] not in " ".join(master.cmdline())
        assert started["ticket"] not in " ".join(master.cmdline())
    assert [r["engine"] for r in e2e.list_json()] == ["openssh"]
    assert proc.wait(15) == 0, proc.stderr
    assert proc.next_event("stopped", 2)["reason"] == "ttl"
    assert_port_released(port)
    assert gone(masters)


def test_no_token_on_any_ssh_argv_while_a_raw_client_is_served(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, ttl="30s", via=shared_sshd)
    started = e2e.started(proc)
    token = started["token"]
    with socket.create_connection(("127.0.0.1", started["remote_port"]), timeout=5) as sock:
        sock.sendall(f"SAFETUNNEL {token}\nping".encode())
        assert sock.recv(16) == b"ping"
        for other in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                assert token not in " ".join(other.cmdline()), other.cmdline()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr


def test_kill_9_of_the_share_leaves_no_ssh_process(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, ttl="30s", via=shared_sshd)
    started = e2e.started(proc)
    masters = ssh_children(proc.proc.pid)
    assert masters
    proc.proc.kill()
    assert proc.wait(5) == -signal.SIGKILL
    wait_until(lambda: gone(masters), what="the ssh master to end with its share")
    assert_port_released(started["remote_port"], timeout=10)
    assert e2e.cli("list", "--json").returncode == 0  # prunes the stale record


def test_gatewayports_yes_without_public_exits_6(e2e: E2E, sshd_factory: SSHDFactory) -> None:
    server = sshd_factory(gateway_ports=True)
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, *ENGINE, via=server)
    assert proc.wait(20) == 6, proc.stderr
    assert "ALL interfaces" in proc.stderr and "--public" in proc.stderr
    assert proc.stdout == ""  # never announced as started
    assert "tcpip-forward" in server.log_text()  # it was requested, then cancelled


def test_gatewayports_yes_with_public_starts(e2e: E2E, sshd_factory: SSHDFactory) -> None:
    server = sshd_factory(gateway_ports=True)
    service = e2e.service(http_keepalive)
    # Plain HTTP on purpose (this is about the bind): without TLS it needs the port confirmed.
    plain = ("--no-tls", "--confirm-port", str(service.port))
    proc = e2e.share(service.port, *ENGINE, "--public", *plain, via=server)
    started = e2e.started(proc)
    assert started["remote_bind"] == "0.0.0.0"
    assert http_status(started["remote_port"], started["token"]) == 200
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr


def test_a_refused_remote_port_exits_6(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    # sshd's own port is taken on the server's 127.0.0.1, so the forward cannot bind there.
    taken = str(shared_sshd.port)
    proc = e2e.share(service.port, *ENGINE, "--remote-port", taken, via=shared_sshd)
    assert proc.wait(20) == 6, proc.stderr
    assert "refused to listen" in proc.stderr
    assert proc.stdout == ""


@contextlib.contextmanager
def frozen_sessions(server: SSHD) -> Iterator[None]:
    """SIGSTOP sshd's per-connection processes (the listener keeps running); SIGCONT after."""
    children = psutil.Process(server.pid).children(recursive=True)
    assert children, "no sshd session process to stop"
    for child in children:
        child.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGCONT)


@pytest.mark.slow
def test_ssh_loss_exits_8_without_reconnect(e2e: E2E, sshd: SSHD) -> None:
    service = e2e.service(echo)
    argv = (*ENGINE, "--keepalive", "1", "--no-reconnect")
    proc = e2e.share(service.port, *argv, ttl="30s", via=sshd)
    started = e2e.started(proc)
    masters = ssh_children(proc.proc.pid)
    assert port_open(started["remote_port"])
    with frozen_sessions(sshd):
        code = proc.wait(20)
    assert code == 8, proc.stderr
    assert proc.next_event("stopped", 2)["reason"] == "ssh-lost"
    assert gone(masters)
    assert e2e.records() == []
