"""Faults around SSH loss: a share reconnects within its TTL (same remote port, same token), on
both engines and in the background; ``--no-reconnect`` and an outage longer than the TTL end
it with exit 8 and one line; a share killed with -9 leaves no ssh process and no listener.

sshd is frozen (SIGSTOP of the listener and every session process) or killed and started again
on the same port. Loss is noticed through a short --keepalive. Nothing here measures time: each
step waits for an event or a state with a generous limit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from e2e import (
    E2E,
    ShareProcess,
    assert_port_released,
    closed_by_peer,
    connect,
    http_status,
    port_open,
    wait_until,
)
from engine_pin import ENGINES
from services import Service, echo, http_keepalive
from sshd import SSHD, SSHD_BIN, _daemon_env, _wait_listening

pytestmark = [pytest.mark.fault, pytest.mark.sshd, pytest.mark.slow]

KEEPALIVE = ("--keepalive", "0.5")


def sshd_processes(server: SSHD) -> list[psutil.Process]:
    """The listener and every per-connection process under it."""
    parent = psutil.Process(server.pid)
    return [parent, *parent.children(recursive=True)]


@contextlib.contextmanager
def frozen(server: SSHD) -> Iterator[None]:
    """SIGSTOP sshd whole (new connections wait in its backlog); SIGCONT after."""
    procs = sshd_processes(server)
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)


def kill_sshd(server: SSHD) -> None:
    """kill -9 of sshd and all its session processes: every connection drops at once."""
    procs = sshd_processes(server)
    for proc in reversed(procs):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    server.process.wait(5)


@pytest.fixture
def restarts() -> Iterator[list[SSHD]]:
    """sshd daemons started again by a test; stopped at teardown."""
    started: list[SSHD] = []
    yield started
    for server in started:
        server.stop()


def restart(server: SSHD, restarts: list[SSHD]) -> SSHD:
    """The same sshd (config, host key, port) started again after :func:`kill_sshd`."""
    argv = [str(SSHD_BIN), "-D", "-f", str(server.config_path), "-E", str(server.log_path)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=_daemon_env())
    again = dataclasses.replace(server, process=process, _stopped=False)
    restarts.append(again)
    assert _wait_listening(process, server.port, timeout=10), f"sshd did not restart on {server}"
    return again


def next_event(proc: ShareProcess, kind: str, timeout: float = 90.0) -> dict[str, Any]:
    return proc.next_event(kind, timeout)


def echo_works(port: int, token: str, payload: bytes = b"again") -> bool:
    with connect(port, 10) as sock:
        sock.sendall(f"SAFETUNNEL {token}\n".encode() + payload)
        sock.settimeout(10)
        return sock.recv(64) == payload


def refused_without_token(port: int, service: Service) -> bool:
    """A wrong token is closed by the gate and never reaches the service."""
    before = service.connections
    with connect(port, 10) as sock:
        sock.sendall(b"SAFETUNNEL st_wrong\nleak")
        closed = closed_by_peer(sock, 10)
    return closed and service.connections == before


def share(e2e: E2E, service: Service, engine: str, server: SSHD, *extra: str) -> ShareProcess:
    return e2e.share(service.port, "--engine", engine, *KEEPALIVE, *extra, ttl="3m", via=server)


def assert_clean_stop(e2e: E2E, proc: ShareProcess, port: int) -> None:
    killed = e2e.run("kill", "--all", timeout=30)
    assert killed.returncode == 0, killed.stderr
    assert proc.wait(30) == 0, proc.stderr
    assert_port_released(port, timeout=15)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_sshd_frozen_and_thawed_the_same_link_works_again(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    proc = share(e2e, service, engine, sshd)
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    assert http_status(port, token) == 200
    with frozen(sshd):
        lost = next_event(proc, "reconnecting", 30)
    assert lost["attempt"] == 1 and lost["remote_port"] == port and lost["error"]
    assert token not in json.dumps(lost)
    back = next_event(proc, "reconnected")
    assert back["remote_port"] == port and back["attempt"] >= 1
    assert http_status(port, token) == 200  # the same link, the same token
    served = service.connections
    assert http_status(port, None) == 401
    assert service.connections == served  # nothing reached the service without the token
    kinds = [entry["event"] for entry in e2e.audit(started["id"])]
    assert "reconnecting" in kinds and "reconnected" in kinds
    assert_clean_stop(e2e, proc, port)


@pytest.mark.parametrize("engine", ENGINES)
def test_sshd_killed_during_a_transfer_and_restarted_reconnects(
    e2e: E2E, sshd: SSHD, engine: str, restarts: list[SSHD]
) -> None:
    service = e2e.service(echo)
    proc = share(e2e, service, engine, sshd)
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    with connect(port, 10) as transfer:
        transfer.sendall(f"SAFETUNNEL {token}\n".encode() + b"x" * 65536)
        transfer.settimeout(10)
        assert transfer.recv(1)
        kill_sshd(sshd)
        next_event(proc, "reconnecting", 30)
    while next_event(proc, "reconnecting", 60)["attempt"] < 2:
        pass  # sshd is down: at least one attempt failed
    restart(sshd, restarts)
    assert next_event(proc, "reconnected")["remote_port"] == port
    assert echo_works(port, token)
    assert refused_without_token(port, service)
    assert_clean_stop(e2e, proc, port)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_reconnect_ends_with_exit_8_and_releases_the_port(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(echo)
    proc = share(e2e, service, engine, sshd, "--no-reconnect")
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    with connect(port, 10) as transfer:
        transfer.sendall(f"SAFETUNNEL {token}\n".encode() + b"y" * 65536)
        transfer.settimeout(10)
        assert transfer.recv(1)
        for child in psutil.Process(sshd.pid).children(recursive=True):
            child.kill()  # the sessions die; the listener stays to show the port is free
        assert proc.wait(30) == 8, proc.stderr
    assert next_event(proc, "stopped", 5)["reason"] == "ssh-lost"
    assert "reconnecting" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "was lost" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert_port_released(port, timeout=15)


@pytest.mark.parametrize("engine", ENGINES)
def test_sshd_gone_longer_than_the_ttl_exits_8_and_says_so(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(echo)
    argv = ("--engine", engine, *KEEPALIVE)
    proc = e2e.share(service.port, *argv, ttl="8s", via=sshd)
    started = e2e.started(proc)
    kill_sshd(sshd)
    next_event(proc, "reconnecting", 30)
    assert proc.wait(60) == 8, proc.stderr
    assert next_event(proc, "stopped", 5)["reason"] == "ssh-lost"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "before the TTL ran out" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not port_open(started["remote_port"])
    assert e2e.records() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_9_after_a_reconnect_leaves_no_ssh_and_no_listener(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(echo)
    proc = share(e2e, service, engine, sshd)
    started = e2e.started(proc)
    port = started["remote_port"]
    with frozen(sshd):
        next_event(proc, "reconnecting", 30)
    next_event(proc, "reconnected")
    descendants = psutil.Process(proc.proc.pid).children(recursive=True)
    proc.proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    wait_until(lambda: all(not p.is_running() or _zombie(p) for p in descendants), 15, "no ssh")
    assert_port_released(port, timeout=30)
    assert e2e.records() != []  # a killed share cannot remove its own record...
    assert e2e.list_json() == []  # ...the next `list` prunes it
    assert e2e.records() == []


def _zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("engine", ENGINES)
def test_a_background_share_reconnects(e2e: E2E, sshd: SSHD, engine: str) -> None:
    service = e2e.service(http_keepalive)
    argv = ("--engine", engine, *KEEPALIVE)
    started = e2e.share_bg(service.port, "3m", *argv, via=sshd)
    tunnel_id, port = started["id"], started["remote_port"]
    assert e2e.status(tunnel_id)["state"] == "serving"
    with frozen(sshd):
        wait_until(lambda: e2e.status(tunnel_id)["state"] == "reconnecting", 30, "reconnecting")
        wait_until(lambda: e2e.list_json()[0]["state"] == "reconnecting", 30, "listed so")
    wait_until(lambda: e2e.status(tunnel_id)["state"] == "serving", 90, "serving again")
    wait_until(lambda: e2e.list_json()[0]["state"] == "serving", 30, "listed as serving")
    assert e2e.status(tunnel_id)["remote_port"] == port
    kinds = [entry["event"] for entry in e2e.audit(tunnel_id)]
    assert "reconnecting" in kinds and "reconnected" in kinds
    assert http_status(port, started["token"]) == 200
    e2e.cli_ok("kill", tunnel_id)
    assert_port_released(port, timeout=15)
