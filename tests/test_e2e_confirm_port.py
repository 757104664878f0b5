"""``--confirm-port PORT``: the typed confirmation of a risky share given on the command line.

Through the console script, without a terminal (the scripted case it exists for) and under a
pseudo-terminal (where it replaces the typed port, and the y/N question stays unless --yes).
The risk here is a TTL over 4 h, which any port can have; both engines and the built-in gateway
share one flow, so the gateway is enough to start a share.
"""

from __future__ import annotations

import signal

import pytest
from e2e import E2E
from services import http_keepalive
from sshd import SSHD
from test_e2e_share_prompts import StartPty, pty_share  # noqa: F401 (fixture)

pytestmark = pytest.mark.sshd

RISKY_TTL = "5h"


def test_yes_alone_refuses_a_risky_share_without_a_terminal(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    result = e2e.run("share", str(service.port), "--ttl", RISKY_TTL, "--yes", "--json")
    assert result.returncode == 3, result.stderr
    assert "TTL of 5h is over 4h" in result.stderr  # the risk is named, not only "risky"
    assert f"--yes --confirm-port {service.port}" in result.stderr
    assert result.stdout == ""
    assert e2e.records() == []


def test_yes_and_matching_confirm_port_start_a_risky_share_without_a_terminal(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(
        service.port, "--confirm-port", str(service.port), ttl=RISKY_TTL, via=shared_sshd
    )
    started = e2e.started(proc)
    assert started["remote_bind"] == "127.0.0.1"  # acknowledged without widening the bind
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr
    confirmed = [e for e in e2e.audit(started["id"]) if e["event"] == "confirmed"]
    assert confirmed and confirmed[0]["confirm_port"] is True
    assert confirmed[0]["risks"] == ["long-ttl"]


def test_a_confirm_port_that_does_not_match_is_not_confirmed(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    other = str(service.port + 1 if service.port < 65535 else service.port - 1)
    result = e2e.run(
        "share", str(service.port), "--ttl", RISKY_TTL, "--yes", "--confirm-port", other
    )
    assert result.returncode == 3, result.stderr
    assert f"--confirm-port {other} is not the shared port {service.port}" in result.stderr
    assert e2e.records() == []


def test_confirm_port_without_yes_still_needs_a_terminal(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    port = str(service.port)
    result = e2e.run("share", port, "--ttl", RISKY_TTL, "--confirm-port", port)
    assert result.returncode == 3, result.stderr
    assert "pass --yes" in result.stderr
    assert e2e.records() == []


def test_confirm_port_at_a_terminal_leaves_only_the_y_n_question(
    e2e: E2E,
    pty_share: StartPty,  # noqa: F811 (fixture)
) -> None:
    service = e2e.service(http_keepalive)
    port = str(service.port)
    share = pty_share(port, "--ttl", RISKY_TTL, "--confirm-port", port)
    text = share.expect("Share it? [y/N]")
    assert "TTL of 5h is over 4h" in text  # the risk is still shown
    assert "Type the port number" not in text
    share.send("n")
    assert share.wait() == 3, share.text
