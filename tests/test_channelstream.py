"""The paramiko ByteStream gives its buffered input back when it closes.

A refused connection's channel can hold up to its SSH window (2 MiB) of junk. The input
notification made a reference cycle (channel -> input buffer -> notifier -> pump -> stream ->
channel), so a closed channel, and all it had buffered, lived until the next full garbage
collection, which a junk flood does not trigger: 250 refused connections with 4 MiB of junk
each left 454 MiB in closed channels of a share on the built-in gateway.
"""

from __future__ import annotations

import gc
import weakref

import paramiko

from safetunnel.ssh.channelstream import ChannelStream


class _Reader:
    """Stands in for the pump: it holds the stream, and the stream's notification calls it."""

    def __init__(self, stream: ChannelStream) -> None:
        self.stream = stream
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


def test_a_closed_stream_is_freed_without_the_cycle_collector() -> None:
    channel = paramiko.Channel(7)
    channel.in_buffer.feed(b"junk" * 1024)
    reader = _Reader(ChannelStream(channel, ("127.0.0.1", 1)))
    assert reader.stream.notify_on_input(reader.kick)
    assert reader.kicks == 1  # input was waiting
    gone = weakref.ref(channel)
    gc.disable()
    try:
        reader.stream.close()
        assert len(channel.in_buffer) == 0  # input nobody will read is let go at once
        del channel, reader
        assert gone() is None, "the closed channel is kept alive by a reference cycle"
    finally:
        gc.enable()
