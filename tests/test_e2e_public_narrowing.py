"""``--public`` says what the server really did: a real sshd with ``GatewayPorts no`` binds every
remote forward on its loopback, silently, so the share refuses (exit 6, naming the setting)
instead of claiming ``0.0.0.0``; with ``clientspecified`` the wildcard bind is real and reachable
beyond 127.0.0.1. Both engines, through the console script."""

from __future__ import annotations

import socket

import pytest
from e2e import E2E, assert_port_released
from engine_pin import ENGINES
from services import http_keepalive
from sshd import SSHD, SSHDFactory
from test_e2e_share_refusals import free_remote_port

pytestmark = pytest.mark.sshd


@pytest.mark.parametrize("engine", ENGINES)
def test_public_on_gatewayports_no_refuses_naming_the_setting(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    remote = free_remote_port()
    argv = ("--engine", engine, "--public", "--remote-port", str(remote))
    proc = e2e.share(service.port, *argv, via=sshd)
    assert proc.wait(30) == 6, proc.stderr
    assert "GatewayPorts clientspecified" in proc.stderr
    assert "loopback only" in proc.stderr
    assert proc.stdout == ""  # never announced as started
    # The confirmation (--yes shows it) names the bind asked for; after the probe found the
    # listener on loopback only, nothing claims 0.0.0.0 for it.
    said = proc.stderr[proc.stderr.index("Error:") :]
    assert "(bind 0.0.0.0)" in proc.stderr[: proc.stderr.index("Error:")]
    assert "0.0.0.0" not in said
    assert "Sharing" not in proc.stderr
    assert_port_released(remote)
    log = sshd.log_text()
    assert "192.0.2.1" in log  # the probe was what told, and it was cancelled again
    assert log.count("cancel-tcpip-forward") >= 1


@pytest.mark.parametrize("engine", ENGINES)
def test_public_on_gatewayports_clientspecified_listens_beyond_loopback(
    e2e: E2E, sshd_factory: SSHDFactory, engine: str
) -> None:
    server = sshd_factory(gateway_ports="clientspecified")
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--engine", engine, "--public", via=server)
    started = e2e.started(proc)
    assert started["remote_bind"] == "0.0.0.0"
    # 127.0.0.2 reaches a wildcard listener only, never one bound on 127.0.0.1: the claim holds.
    with socket.create_connection(("127.0.0.2", started["remote_port"]), 5):
        pass
    proc.proc.terminate()
    assert proc.wait(15) == 0, proc.stderr
