"""How a logged-in paramiko transport reads its socket: ahead of its packets, with every byte
handed out once and in order, and a clean EOFError at the end or after a close."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from paramiko.packet import Packetizer

from safetunnel.ssh._socketio import read_ahead, shut_down_before_close


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, Packetizer]]:
    ours, theirs = socket.socketpair()
    packetizer = Packetizer(ours)
    shut_down_before_close(packetizer, ours)
    read_ahead(packetizer, ours, 64)
    yield ours, theirs, packetizer
    packetizer.close()
    theirs.close()


def _kernel_has_more(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def test_a_burst_is_fetched_at_once_and_handed_out_in_order(
    pair: tuple[socket.socket, socket.socket, Packetizer],
) -> None:
    ours, theirs, packetizer = pair
    theirs.sendall(b"aaaa" + b"bbbbbbbb" + b"cc")
    assert packetizer.read_all(4) == b"aaaa"
    assert not _kernel_has_more(ours), "the rest of the burst was left for more system calls"
    assert packetizer.read_all(8) == b"bbbbbbbb"
    assert packetizer.read_all(2) == b"cc"


def test_a_packet_split_across_reads_and_larger_than_a_read_arrives_whole(
    pair: tuple[socket.socket, socket.socket, Packetizer],
) -> None:
    _, theirs, packetizer = pair
    payload = bytes(range(256)) * 4  # 1 KiB, more than one 64-byte read ahead
    theirs.sendall(b"xy" + payload[:100])
    assert packetizer.read_all(1) == b"x"
    theirs.sendall(payload[100:])
    assert packetizer.read_all(1) == b"y"
    assert packetizer.read_all(len(payload)) == payload


def test_eof_mid_packet_is_eoferror(pair: tuple[socket.socket, socket.socket, Packetizer]) -> None:
    _, theirs, packetizer = pair
    theirs.sendall(b"abc")
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        packetizer.read_all(8)


def test_a_read_after_the_close_is_eoferror(
    pair: tuple[socket.socket, socket.socket, Packetizer],
) -> None:
    _, _, packetizer = pair
    packetizer.close()
    with pytest.raises(EOFError):
        packetizer.read_all(4)


def test_bytes_paramiko_read_with_the_banner_are_handed_out_once() -> None:
    """paramiko keeps what it read past the banner line for its next reads; while it holds
    any, its own reader stays, so those bytes come out once and before the socket's."""
    ours, theirs = socket.socketpair()
    packetizer = Packetizer(ours)
    packetizer._Packetizer__remainder = b"abc"  # type: ignore[attr-defined]
    try:
        read_ahead(packetizer, ours, 64)
        theirs.sendall(b"defg")
        assert packetizer.read_all(2) == b"ab"
        assert packetizer.read_all(5) == b"cdefg"
    finally:
        packetizer.close()
        theirs.close()


def test_a_read_of_no_bytes_or_fewer_takes_nothing(
    pair: tuple[socket.socket, socket.socket, Packetizer],
) -> None:
    """paramiko's length arithmetic can ask for a negative count on a damaged packet."""
    _, theirs, packetizer = pair
    theirs.sendall(b"0123456789")
    assert packetizer.read_all(4) == b"0123"
    assert packetizer.read_all(-2) == b""
    assert packetizer.read_all(0) == b""
    assert packetizer.read_all(4) == b"4567"
