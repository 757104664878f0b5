"""HTTP exchanges at the gate's edges.

1. A response that ends only when the service closes (HTTP/1.0 style, no Content-Length), sent
   before the request body is complete (the client sent ``Expect: 100-continue`` and waits),
   is announced with ``Connection: close``: the gate must then end the connection, as the
   client can only see the end of that response by the close.
2. A token-shaped value in the request *method* of a later request on a kept-alive connection
   is refused (400) like one anywhere else in a request: it must not reach the service.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest
from e2e import E2E, connect
from gatekit import TOKEN, authed, request, run
from services import Service
from sshd import SSHD

from safetunnel.gate.events import Close, NeedData

UPLOAD = authed(
    "/upload", [("Expect", "100-continue"), ("Content-Length", "100000")], method="POST"
)
# An HTTP/1.0-style answer, before the body: it ends when the service closes its connection.
EARLY_ANSWER = b"HTTP/1.0 413 Payload Too Large\r\nContent-Type: text/plain\r\n\r\ntoo big"


def test_close_delimited_answer_before_the_request_body_ends_closes_the_connection() -> None:
    result = run([("remote", UPLOAD), ("service", EARLY_ANSWER), ("service", b"")])
    # The whole response went out, marked as the connection's last...
    assert result.remote.endswith(b"\r\n\r\ntoo big")
    assert b"Connection: close" in result.remote
    # ...but the only way the client can learn that it ended is the close, and the service is
    # gone: the gate must end the connection, not wait (with no deadline) for the body.
    assert not isinstance(result.events[-1], NeedData), result.events[-3:]
    assert isinstance(result.final, Close)


def _answer_early_and_close(conn: socket.socket, record: object) -> None:
    """An HTTP/1.0 service that refuses an upload from its head alone, without reading the body
    (as a handler that checks the path or the size first does), and closes."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return
        record(data)  # type: ignore[operator]
        buffer += data
    conn.sendall(EARLY_ANSWER)


@pytest.mark.sshd
def test_close_delimited_early_answer_reaches_its_end_through_a_real_share(
    e2e: E2E, via: SSHD | None
) -> None:
    service: Service = e2e.service(_answer_early_and_close)
    proc = e2e.share(service.port, via=via, ttl="60s")
    started = e2e.started(proc)
    upload = (
        "POST /upload HTTP/1.1\r\nHost: localhost\r\n"
        f"X-Safetunnel-Token: {started['token']}\r\n"
        "Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    with connect(started["remote_port"]) as sock:
        sock.sendall(upload)  # and, like curl after a final answer to Expect, no body
        sock.settimeout(0.5)
        received, closed = b"", False
        limit = time.monotonic() + 8.0
        while time.monotonic() < limit:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
    proc.proc.send_signal(signal.SIGTERM)  # stopped first, so a failure leaves nothing behind
    assert proc.wait(15) == 0, proc.stderr
    assert received.endswith(b"too big"), received
    assert closed, "the response's end (the close) never came: the client hangs"


def test_token_in_the_request_method_does_not_reach_the_service() -> None:
    later = request("/two", [("X-Safetunnel-Token", TOKEN)], method=TOKEN)
    result = run(
        [
            ("remote", authed("/one")),
            ("service", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            ("remote", later),
        ]
    )
    assert TOKEN.encode() not in result.service
