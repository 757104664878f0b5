"""Attacks on a TLS share, through the console script and a real sshd: failed handshakes cost
what wrong tokens cost (``--max-failures`` stops the share), while ``connect``'s pin check,
which completes the handshake and sends nothing, costs nothing; a refusal over TLS ends with a
closing alert, not a truncation."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import urllib.request

import pytest
from e2e import E2E, assert_port_released, connect, read_response, recv_all, request_bytes
from engine_pin import ENGINES
from services import http_keepalive
from sshd import SSHD, SSHDFactory
from test_e2e_connect import listening, stop
from test_e2e_public_tls import served_pin

pytestmark = [pytest.mark.sshd, pytest.mark.skipif(not shutil.which("curl"), reason="no curl")]


@pytest.fixture
def public_sshd(sshd_factory: SSHDFactory) -> SSHD:
    return sshd_factory(gateway_ports="clientspecified")


def plain_http(port: int) -> None:
    """A plain-HTTP request to a TLS port: refused before the gate reads a byte."""
    with connect(port) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/" not in recv_all(sock, 20)  # at most an alert, then the close


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_handshakes_reach_max_failures_but_connects_pin_checks_do_not(
    e2e: E2E, public_sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    argv = ("--engine", engine, "--public", "--max-failures", "3")
    share = e2e.share(service.port, *argv, via=public_sshd, ttl="60s")
    started = e2e.started(share)
    port = started["remote_port"]
    for attempt in range(4):  # each checks the pin once before it listens, and once per dial
        proc = e2e.connect(started["ticket"], via=public_sshd)
        _, local = listening(proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/c{attempt}", timeout=10) as answer:
            assert answer.status == 200
        stop(proc, local)
    assert share.proc.poll() is None, share.stderr  # none of that was a failure
    for _ in range(3):
        plain_http(port)
    assert share.wait(20) == 1, share.stderr
    assert share.next_event("stopped")["reason"] == "max-failures"
    lines = share.stdout.splitlines()
    refused = [x for x in lines if '"event":"connection",' in x and '"reason":"tls"' in x]
    assert len(refused) == 3, share.stdout
    assert_port_released(port)
    assert b"/plain" not in bytes(service.received)


def test_a_client_that_gives_up_during_the_handshake_counts(e2e: E2E, public_sshd: SSHD) -> None:
    """It sends its ClientHello, hears the server's key, and closes: a failed handshake."""
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--public", "--max-failures", "2", via=public_sshd, ttl="60s")
    port = e2e.started(share)["remote_port"]
    for _ in range(2):
        with connect(port) as sock:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ssl_client().wrap_bio(incoming, outgoing)
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            sock.sendall(outgoing.read())
            assert sock.recv(65536)  # the server's first flight: then this client gives up
    assert share.wait(20) == 1, share.stderr
    assert share.next_event("stopped")["reason"] == "max-failures"


def ssl_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what this test checks is not the key
    return context


@pytest.mark.parametrize("engine", ENGINES)
def test_a_refusal_over_tls_ends_with_a_closing_alert(
    e2e: E2E, public_sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--engine", engine, "--public", via=public_sshd, ttl="60s")
    port = e2e.started(share)["remote_port"]
    raw = socket.create_connection(("127.0.0.1", port), 10)
    # Without suppress_ragged_eofs, an EOF without the closing alert is an SSLEOFError.
    with ssl_client().wrap_socket(raw, suppress_ragged_eofs=False) as tls:
        tls.sendall(request_bytes("/", {"X-Safetunnel-Token": "st_" + "x" * 43}))
        assert read_response(tls, 10).status == 401
        assert tls.recv(100) == b""  # the closing alert, then the end: no truncation
    share.proc.terminate()
    assert share.wait(20) == 0, share.stderr
    assert bytes(service.received) == b""


def test_a_background_shares_pin_is_in_its_record_status_and_list(
    e2e: E2E, public_sshd: SSHD
) -> None:
    """The pin is public (it names a key, it opens nothing): a detached share's can be looked up
    later, and it is the key the share serves."""
    service = e2e.service(http_keepalive)
    started = e2e.share_bg(service.port, "2m", "--public", via=public_sshd)
    tunnel_id, pin = started["id"], started["tls_pin"]
    assert pin == served_pin(started["remote_port"])
    record = json.loads(e2e.record_path(tunnel_id).read_text())
    assert (record["tls"], record["tls_pin"]) == (True, pin)
    assert (e2e.status(tunnel_id)["tls"], e2e.status(tunnel_id)["tls_pin"]) == (True, pin)
    assert [(r["tls"], r["tls_pin"]) for r in e2e.list_json()] == [(True, pin)]
    text = e2e.cli_ok("status", tunnel_id).stdout
    assert re.search(rf"^TLS: +pin {re.escape(pin)}$", text, re.M), text
    e2e.cli_ok("kill", tunnel_id)


def test_a_plain_share_says_no_tls_in_status(e2e: E2E, shared_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    tunnel_id = e2e.share_bg(service.port, "2m", via=shared_sshd)["id"]
    info = e2e.status(tunnel_id)
    assert (info["tls"], info["tls_pin"]) == (False, None)
    assert re.search(r"^TLS: +no$", e2e.cli_ok("status", tunnel_id).stdout, re.M)
    e2e.cli_ok("kill", tunnel_id)


@pytest.mark.slow
def test_a_handshake_stuck_half_way_is_cut_at_the_header_deadline(
    e2e: E2E, public_sshd: SSHD
) -> None:
    """A ClientHello, then silence: the share hangs up at the gate's 10 s header deadline (the
    socket's 30 s limit only keeps a broken share from hanging the test) and counts it."""
    service = e2e.service(http_keepalive)
    share = e2e.share(service.port, "--public", "--max-failures", "1", via=public_sshd, ttl="60s")
    port = e2e.started(share)["remote_port"]
    with connect(port) as sock:
        outgoing = ssl.MemoryBIO()
        with pytest.raises(ssl.SSLWantReadError):
            ssl_client().wrap_bio(ssl.MemoryBIO(), outgoing).do_handshake()
        sock.sendall(outgoing.read())
        sock.settimeout(30)
        assert sock.recv(65536)  # the server's flight: the handshake is half-way, and stays so
        assert recv_all(sock, 30) == b""  # then the close
    assert share.wait(20) == 1, share.stderr
    closed = share.next_event("connection")
    assert (closed["allowed"], closed["reason"]) == (False, "timeout"), closed
    assert share.next_event("stopped")["reason"] == "max-failures"
