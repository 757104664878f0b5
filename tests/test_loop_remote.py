"""A paramiko channel's end on the relay loop: it pokes the loop once per change the pump
watches for, until the loop has seen it, and what already waits pokes at once, as poll reports
a ready socket. A real ``paramiko.Channel`` (no transport: nothing is sent)."""

from __future__ import annotations

import gc
import weakref

import paramiko
import pytest

from safetunnel.sharing.loopremote import StreamRemote, loop_remote
from safetunnel.sharing.looptypes import READ, STREAM, WRITE
from safetunnel.ssh.channelstream import ChannelStream


class Pokes:
    """Stands in for the relay loop: records the clients poked."""

    def __init__(self) -> None:
        self.clients: list[object] = []

    def poke(self, client: object) -> None:
        self.clients.append(client)


def opened() -> tuple[paramiko.Channel, StreamRemote, Pokes]:
    channel = paramiko.Channel(3)
    remote = loop_remote(ChannelStream(channel, ("127.0.0.1", 1)))
    assert isinstance(remote, StreamRemote)
    assert remote.fd == STREAM
    pokes = Pokes()
    remote.open(pokes, "pump")  # type: ignore[arg-type]
    return channel, remote, pokes


def window_opens(channel: paramiko.Channel, size: int) -> None:
    """What paramiko's transport thread does with the peer's WINDOW_ADJUST."""
    message = paramiko.Message()
    message.add_int(size)
    message.rewind()
    channel._window_adjust(message)  # type: ignore[attr-defined]


def test_input_pokes_once_until_the_loop_has_seen_it() -> None:
    channel, remote, pokes = opened()
    remote.watch(READ)
    assert pokes.clients == []  # nothing waits yet
    channel.in_buffer.feed(b"one")
    channel.in_buffer.feed(b"two")
    assert pokes.clients == ["pump"]  # the second input finds a poke still queued
    remote.seen()
    assert remote.recv(1024) == b"onetwo"
    assert remote.recv(1024) is None  # nothing waits: not an EOF
    channel.in_buffer.feed(b"three")
    assert pokes.clients == ["pump", "pump"]


def test_what_waits_already_pokes_when_watched_and_nothing_pokes_unwatched() -> None:
    channel, remote, pokes = opened()
    channel.in_buffer.feed(b"early")  # before the pump watched: nobody was told
    assert pokes.clients == []
    remote.watch(READ)
    assert pokes.clients == ["pump"]
    remote.seen()
    remote.watch(0)
    channel.in_buffer.feed(b"more")
    window_opens(channel, 1024)
    assert pokes.clients == ["pump"]


def test_an_eof_pokes_and_reads_empty() -> None:
    channel, remote, pokes = opened()
    remote.watch(READ)
    channel.in_buffer.close()  # what paramiko does with the peer's EOF
    assert pokes.clients == ["pump"]
    assert remote.recv(1024) == b""


def test_a_window_that_opens_pokes_only_a_pump_that_waits_to_write() -> None:
    channel, remote, pokes = opened()
    remote.watch(READ)
    window_opens(channel, 4096)
    assert pokes.clients == []  # nothing to write: the window is no news
    remote.watch(READ | WRITE)  # and it is open already: poll would say writable
    assert pokes.clients == ["pump"]
    remote.seen()
    window_opens(channel, 4096)
    assert pokes.clients == ["pump", "pump"]


def test_a_closed_stream_tells_the_loop_nothing_more() -> None:
    channel = paramiko.Channel(3)
    stream = ChannelStream(channel, ("127.0.0.1", 1))
    remote = StreamRemote(stream)
    pokes = Pokes()
    remote.open(pokes, "pump")  # type: ignore[arg-type]
    remote.watch(READ | WRITE)
    remote.seen()
    pokes.clients.clear()
    stream.close()
    window_opens(channel, 4096)
    channel.in_buffer.feed(b"late")
    assert pokes.clients == []


def test_a_stream_closed_before_the_loop_took_it_holds_nothing_of_it() -> None:
    """Teardown may close a channel before its pump opens it on the loop: opening it then must
    not hang callbacks on the channel that would keep the pump alive (a reference cycle)."""
    channel = paramiko.Channel(3)
    stream = ChannelStream(channel, ("127.0.0.1", 1))
    stream.close()
    remote = StreamRemote(stream)
    gc.disable()
    try:
        remote.open(Pokes(), "pump")  # type: ignore[arg-type]
        remote.watch(READ | WRITE)
        gone = weakref.ref(remote)
        del remote
        assert gone() is None, "the closed channel holds the remote end's callbacks"
    finally:
        gc.enable()


class _StuckTransport:
    """A transport whose rekey never finished: paramiko gives up sending with SSHException."""

    def _send_user_message(self, message: paramiko.Message) -> None:
        raise paramiko.SSHException("Key-exchange timed out waiting for key negotiation")


def test_paramikos_own_send_error_ends_the_connection_like_a_socket_error() -> None:
    """The pump ends a connection on OSError; anything else it logs as a bug of its own."""
    channel = paramiko.Channel(3)
    channel.transport = _StuckTransport()  # type: ignore[assignment]
    channel.out_window_size = channel.out_max_packet_size = 32768
    stream = ChannelStream(channel, ("127.0.0.1", 1))
    with pytest.raises(ConnectionAbortedError, match="Key-exchange timed out"):
        stream.send_nowait(b"answer")
