"""The headline flow for a public share, for both people: the sharer's ``share --public`` serves
TLS, and the recipient's ``connect`` reaches it directly, pinned to the key in the ticket; any
client on the recipient's side then works without a token. A ticket whose pin is not the served
key's is refused before the token is sent."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import urllib.request

import pytest
from e2e import E2E, recv_all
from services import echo, http_keepalive
from sshd import SSHD, SSHDFactory
from test_e2e_connect import listening, stop

from safetunnel.tickets import decode

pytestmark = [pytest.mark.sshd, pytest.mark.skipif(not shutil.which("curl"), reason="no curl")]

OTHER_PIN = "sha256//" + "A" * 43 + "="


@pytest.fixture
def public_sshd(sshd_factory: SSHDFactory) -> SSHD:
    return sshd_factory(gateway_ports="clientspecified")


def test_connect_reaches_a_public_tls_share_directly_with_the_pin(
    e2e: E2E, public_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--public", via=public_sshd, ttl="60s")
    started = e2e.started(share)
    ticket = decode(started["ticket"])
    assert ticket.tls_pin == started["tls_pin"]

    proc = e2e.connect(started["ticket"], via=public_sshd)
    _, port = listening(proc)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/direct", timeout=10) as answer:
        assert (answer.status, answer.read()) == (200, b"hello /direct")
    assert started["token"].encode() not in bytes(service.received)
    stop(proc, port)
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0


def test_a_raw_client_half_closing_through_tls_gets_its_whole_echo(
    e2e: E2E, public_sshd: SSHD
) -> None:
    service = e2e.service(echo)
    share = e2e.share(service.port, "--public", "--protocol", "tcp", via=public_sshd, ttl="60s")
    started = e2e.started(share)
    proc = e2e.connect(started["ticket"], via=public_sshd)
    _, port = listening(proc)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"over tls")
        client.shutdown(socket.SHUT_WR)  # the echo answers after EOF
        assert recv_all(client) == b"over tls"
    assert bytes(service.received) == b"over tls"
    stop(proc, port)
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0


def test_a_ticket_pinned_to_another_key_is_refused_with_exit_4(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--public", via=public_sshd, ttl="60s")
    started = e2e.started(share)
    forged = dataclasses.replace(decode(started["ticket"]), tls_pin=OTHER_PIN).encode()
    proc = e2e.connect(forged, via=public_sshd)
    assert proc.wait(30) == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert bytes(service.received) == b""
    share.proc.send_signal(signal.SIGTERM)
    assert share.wait(20) == 0
