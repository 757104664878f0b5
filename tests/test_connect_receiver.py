"""The receiver's own failures, said in one plain line."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta

import pytest

from safetunnel import tokens
from safetunnel.errors import SafetunnelError
from safetunnel.receiving.dialer import SocketChannel
from safetunnel.receiving.receiver import Receiver
from safetunnel.receiving.relay import Channel, Relay
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now


class Unused:
    """A dialer that is never asked for a connection."""

    closed = False

    def start(self) -> None:
        pass

    def watch(self, lost: Callable[[SafetunnelError], None]) -> None:
        pass

    def dial(self, origin: tuple[str, int]) -> Channel | None:
        raise AssertionError("no connection was expected")

    def close(self) -> None:
        self.closed = True


def test_a_local_port_in_use_is_one_plain_line_and_the_dialer_is_closed() -> None:
    ticket = Ticket(
        ssh_host="alice@host.example",
        ssh_port=None,
        host_key="SHA256:" + "A" * 43,
        key_type="ssh-ed25519",
        remote_bind="127.0.0.1",
        remote_port=40000,
        protocol="tcp",
        expires_at=utc_now() + timedelta(minutes=5),
        token=tokens.generate(),
    )
    dialer = Unused()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        receiver = Receiver(ticket, dialer, port)
        with pytest.raises(SafetunnelError) as raised:
            receiver.start()
    assert str(raised.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert dialer.closed


def test_a_share_side_reset_ends_the_clients_connection_too() -> None:
    """The SSH side closed the channel with the preamble unread (a refused channel through
    OpenSSH): its reset must reach the client as the end of its connection, not a silence."""
    client, local = socket.socketpair()
    ours, theirs = socket.socketpair()
    done: list[Relay] = []
    relay = Relay(local, SocketChannel(ours), "reset", done.append)
    relay.start(b"SAFETUNNEL st_x\n")
    theirs.close()  # unread data in it: our next read is a reset
    client.settimeout(10)
    try:
        assert client.recv(1) == b""
    finally:
        client.close()
    relay.close()
    assert done == [relay]
