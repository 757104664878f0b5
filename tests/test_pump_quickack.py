"""The pump's socket to the service ACKs at once (a two-write service must not wait 40 ms)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from safetunnel.sharing import pumpio
from safetunnel.sharing.pumpsock import Pending

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


def test_the_relay_outbox_acks_at_once_after_a_request(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    ours.setblocking(False)
    outbox = Pending.for_socket(ours, pumpio.quick_ack)
    outbox.put(b"request")
    assert outbox.send_some() == len(b"request")
    assert quickack(ours) == 1


@pytest.mark.parametrize("sender", ["threaded", "relay"])
def test_a_streams_large_chunk_is_sent_without_the_extra_call(
    pair: tuple[socket.socket, socket.socket], sender: str
) -> None:
    """The service answers a stream only after its end: asking after each chunk only cost."""
    ours, service = pair
    chunk = b"x" * pumpio.STREAM_CHUNK
    if sender == "threaded":
        pumpio.service_sender(ours)(chunk)
    else:
        ours.setblocking(False)
        outbox = Pending.for_socket(ours, pumpio.quick_ack)
        outbox.put(chunk)
        assert outbox.send_some() == len(chunk)
    assert quickack(ours) == 0
    got = 0
    while got < len(chunk):
        got += len(service.recv(len(chunk)))
