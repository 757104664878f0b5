"""The pump's socket to the service ACKs at once (a two-write service must not wait 40 ms)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from safetunnel.sharing import pumpio

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux only"
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP pair in interactive (delayed-ACK) mode after a few exchanges."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        service, _ = server.accept()
    with ours, service:
        for _ in range(5):
            ours.sendall(b"q")
            service.recv(8)
            service.sendall(b"a")
            ours.recv(8)
        yield ours, service


def quickack(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)


def test_a_plain_send_leaves_the_socket_delaying_its_acks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # The control: what the kernel does without our help, so the tests below can fail.
    ours, _ = pair
    ours.sendall(b"request")
    assert quickack(ours) == 0


def test_after_sending_a_request_the_service_is_acked_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    pumpio.service_sender(ours)(b"request")
    assert quickack(ours) == 1
