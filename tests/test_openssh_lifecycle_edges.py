"""A share's life on the OpenSSH engine at its edges, and what it leaves behind.

- a share told to stop while a reconnect attempt waits on a silent server ends at once, and
  the attempt's ``ssh`` with it;
- the TTL ends a share while a reconnect attempt hangs: the forward never comes back after it;
- ``--idle`` ends a share that is reconnecting (nobody can reach it meanwhile either);
- Ctrl-C while ``--background`` waits for its detached share ends that share too;
- a signal that interrupts the host-key probe ends that ``ssh`` too;
- a raw TCP connection opened before the service went down says nothing of the service when it
  closes (no false "service-up");
- a later share sweeps the temporary socket directory a share killed with -9 left behind.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from e2e import (
    E2E,
    ShareProcess,
    bg_share_argv,
    closed_by_peer,
    connect,
    wait_until,
)
from services import echo
from sshd import SSHD
from test_fault_reconnect import frozen, sshd_processes

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

ENGINE = ("--engine", "openssh")
KEEPALIVE = ("--keepalive", "0.5")


# -- helpers --------------------------------------------------------------------------------------


def kill_sshd(server: SSHD) -> None:
    """kill -9 of sshd and its sessions: gone for good, every attempt is refused at once."""
    for proc in reversed(sshd_processes(server)):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    server.process.wait(5)


def ssh_descendants(pid: int) -> list[psutil.Process]:
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name() == "ssh" and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
    return found


def ssh_of_sandbox(e2e: E2E) -> list[psutil.Process]:
    """Live ``ssh`` processes started for this sandbox (whoever their parent is now)."""
    found = []
    for proc in e2e.own_processes():
        with contextlib.suppress(psutil.Error):
            if proc.name() == "ssh" and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def events_of(proc: ShareProcess, kind: str) -> list[str]:
    return [line for line in proc.stdout_lines if f'"event":"{kind}"' in line]


# -- limits while a reconnect attempt is under way --------------------------------------------


def test_kill_during_a_reconnect_attempt_ends_the_share_without_sigterm(
    e2e: E2E, sshd: SSHD
) -> None:
    """An attempt waiting on a frozen server when the share is told to stop: the teardown gives
    it 2 s, then the process must still end (an executor's thread was joined at exit, until the
    attempt's own timeouts ran out), and the attempt's ``ssh`` must end with it."""
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, *KEEPALIVE, ttl="3m", via=sshd)
    started = e2e.started(proc)
    with frozen(sshd):
        proc.next_event("reconnecting", 30)
        wait_until(lambda: ssh_descendants(proc.proc.pid) != [], 10, "the attempt's ssh")
        time.sleep(0.5)
        killed = e2e.run("kill", started["id"], timeout=60)
        code = proc.wait(60)
        time.sleep(1.0)  # PDEATHSIG is delivered as the process ends
        strays = alive(ssh_of_sandbox(e2e))
        kill_all(strays)
    assert killed.returncode == 0, killed.stderr
    assert "SIGTERM" not in killed.stdout, killed.stdout  # "stopped with SIGTERM (did not exit...)"
    assert code == 0, f"the share ended with {code} after `kill` (stderr: {proc.stderr[-300:]})"
    assert strays == [], [p.cmdline()[:3] for p in strays]


def test_the_ttl_ends_a_share_whose_reconnect_attempt_hangs(e2e: E2E, sshd: SSHD) -> None:
    """Reconnector._attempt polls only the stop event: the TTL passes unnoticed while an
    attempt waits, and a server back after the expiry gets the forward again (``reconnected``
    after the TTL, the remote port listening for a share that has expired)."""
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, *KEEPALIVE, ttl="6s", via=sshd)
    e2e.started(proc)
    begun = time.monotonic()
    with frozen(sshd):
        proc.next_event("reconnecting", 30)
        wait_until(lambda: ssh_descendants(proc.proc.pid) != [], 10, "the attempt's ssh")
        time.sleep(max(0.0, 7.5 - (time.monotonic() - begun)))  # thawed after the TTL
    code = proc.wait(60)
    took = time.monotonic() - begun
    assert events_of(proc, "reconnected") == [], "reconnected after its TTL had run out"
    assert took < 6 + 3, f"a 6s share ran for {took:.1f}s"
    assert code == 8, proc.stderr


def test_the_idle_limit_ends_a_share_that_is_reconnecting(e2e: E2E, sshd: SSHD) -> None:
    """The supervisor sits in the reconnect while the server is gone, where the limits were
    not looked at: a share with ``--idle 5s`` retried until its TTL."""
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, *KEEPALIVE, "--idle", "5s", ttl="2m", via=sshd)
    e2e.started(proc)
    kill_sshd(sshd)
    proc.next_event("reconnecting", 30)
    try:
        code: int | None = proc.wait(25)
    except subprocess.TimeoutExpired:
        code = None
        e2e.run("kill", "--all", timeout=30)
        proc.wait(30)
    attempts = len(events_of(proc, "reconnecting"))
    assert code is not None, f"--idle 5s: still running 25 s later, after {attempts} attempts"
    assert code == 0, proc.stderr
    assert any('"reason":"idle"' in line for line in events_of(proc, "stopped")), proc.stdout_lines


# -- --background ---------------------------------------------------------------------------------


def background_children(e2e: E2E) -> list[psutil.Process]:
    found = []
    for proc in e2e.own_processes():
        with contextlib.suppress(psutil.Error):
            if "--background-child" in proc.cmdline():
                found.append(proc)
    return found


def test_ctrl_c_while_a_background_share_starts_leaves_no_share_running(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    """background.spawn is interrupted by the Exit(130) of the signal handler; the child runs
    in a session of its own, its started event meets a closed pipe (an observer failure that
    is only logged) and it serves its whole TTL, announced to nobody."""
    service = e2e.service(echo)
    argv = bg_share_argv(service.port, "2m", "--json", *ENGINE, via=shared_sshd)
    front = ShareProcess(argv, e2e.env, json_events=False)
    e2e.procs.append(front)
    wait_until(lambda: background_children(e2e) != [], 30, "the detached share to be spawned")
    front.proc.send_signal(signal.SIGINT)
    assert front.wait(30) == 130, front.stderr
    time.sleep(5)  # whatever the child was doing has had time to finish starting
    running = background_children(e2e)
    listed = e2e.list_json()
    if listed:
        e2e.run("kill", "--all", timeout=30)
    assert running == [] and listed == [], f"Ctrl-C exited 130, yet a share runs: {listed}"


# -- the host-key probe ---------------------------------------------------------------------------


def test_sigterm_while_the_host_key_is_probed_leaves_no_ssh(e2e: E2E, sshd: SSHD) -> None:
    """hostkeys._probe handles only TimeoutExpired around communicate(): the Exit raised by the
    signal handler leaves the probe ``ssh`` running (no PDEATHSIG, and SIGTERM from another
    terminal does not reach it)."""
    service = e2e.service(echo)
    with frozen(sshd):
        proc = e2e.share(service.port, *ENGINE, ttl="1m", via=sshd)

        def probing() -> bool:
            return any(
                "KnownHostsCommand" in " ".join(p.cmdline()) for p in ssh_descendants(proc.proc.pid)
            )

        wait_until(probing, 20, "the host-key probe")
        probes = ssh_descendants(proc.proc.pid)
        time.sleep(0.5)
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        time.sleep(1.0)
        left = alive(probes)
        kill_all(left)
    assert code == 0, proc.stderr
    assert left == [], f"ssh left running after the share exited: {[p.pid for p in left]}"


# -- the service stops while connections are open -------------------------------------------------


def test_an_old_connection_closing_does_not_say_the_service_is_back(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    """TrafficReports.finished says "up" for any allowed raw TCP connection that ends: one that
    was opened before the service went down reports it back while nothing listens."""
    service = e2e.service(echo)
    proc = e2e.share(service.port, *ENGINE, ttl="1m", via=shared_sshd)
    started = e2e.started(proc)
    port, token = started["remote_port"], started["token"]
    old = connect(port, 10)
    old.sendall(f"SAFETUNNEL {token}\nhello".encode())
    old.settimeout(5)
    assert old.recv(5) == b"hello"
    listener = service._listener  # the service stops taking connections; the open one stays
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    with connect(port, 10) as new:
        new.sendall(f"SAFETUNNEL {token}\nhello".encode())
        assert closed_by_peer(new, 10)
    assert proc.next_event("warning", 10)["code"] == "service-down"
    old.close()
    time.sleep(1.0)
    e2e.run("kill", "--all", timeout=30)
    assert proc.wait(20) == 0, proc.stderr
    ups = [line for line in events_of(proc, "warning") if "service-up" in line]
    assert ups == [], f"told the service is reachable again while nothing listens: {ups}"


# -- kill -9 and the temporary socket directory ---------------------------------------------------


def gate_sockets_of(pid: int, since: float) -> list[Path]:
    """The gate sockets of share ``pid`` in temporary socket directories made since ``since``."""
    found: list[Path] = []
    for directory in Path(tempfile.gettempdir()).glob("safetunnel-*"):
        with contextlib.suppress(OSError):
            if directory.stat().st_mtime >= since:
                found += [f for f in directory.iterdir() if f.name.startswith(f"g-{pid}-")]
    return found


def test_a_later_share_removes_the_gate_socket_a_killed_share_left_in_a_temp_dir(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    """When the state dir's ``ssh/`` path is too long for a unix socket, every session gets a
    fresh /tmp/safetunnel-* directory, which only its own close removes: a later share must
    sweep those of shares killed with -9 (the test sandbox's state dir is long enough for this
    branch)."""
    since = time.time() - 1
    service = e2e.service(echo)
    first = e2e.share(service.port, *ENGINE, ttl="30s", via=shared_sshd)
    e2e.started(first)
    assert gate_sockets_of(first.proc.pid, since), "expected the share's gate socket in /tmp"
    first.proc.kill()
    first.wait(10)
    assert e2e.cli("list", "--json").returncode == 0  # prunes the record
    later = e2e.share(service.port, *ENGINE, ttl="2s", via=shared_sshd)
    e2e.started(later)
    assert later.wait(20) == 0, later.stderr
    left = gate_sockets_of(first.proc.pid, since)
    for path in left:  # do not add to the pile
        with contextlib.suppress(OSError):
            path.unlink()
            path.parent.rmdir()
    assert left == [], f"left behind by the share killed with -9: {left}"
