"""How a tunnel ends when the end comes early: while it is being published, and for a
connection that arrives as it stops.

Both tests drive a real :class:`Tunnel` and the real :class:`Bookkeeper` over the stub engine
session of tests/stub_share.py (no SSH needed); only what an engine does is scripted.
"""

from __future__ import annotations

import socket
import threading
import time

import click
import pytest
from conftest import Sandbox
from e2e import closed_by_peer, wait_for
from stub_share import LOCAL, StubSession
from tunnelkit import Clock, EventLog

from safetunnel import tokens
from safetunnel.registry import records as reg
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.publication import Bookkeeper
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.engine import Forward, Listener, StreamHandler
from safetunnel.ssh.openssh.stream import SocketStream


def _config(ttl: int) -> TunnelConfig:
    return TunnelConfig(
        local=LOCAL, ttl=ttl, ssh_host="alice@bastion:22", tunnel_id=reg.new_tunnel_id()
    )


class _SlowForward(StubSession):
    """A forward that took longer than the share's TTL (a slow server, a short --ttl)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    def forward(
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Listener:
        self._clock.set(self._clock() + 5.0)
        return super().forward(bind, port, on_stream, allow_wildcard=allow_wildcard)


def _threads_of(tunnel_id: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith(tunnel_id) and t.is_alive()]


def test_a_tunnel_that_ends_while_it_is_published_leaves_no_record_nor_threads(
    sandbox: Sandbox,
) -> None:
    """A stop that comes while the observers are told of the start (the TTL, --max-failures, a
    lost SSH session with --no-reconnect) waits for them. Torn down alongside, the books found
    no control server and no publisher yet to close, and then wrote the record and started two
    non-daemon threads after the share was over: `list` showed a dead share, and the process
    never exited. Nothing is scripted but the forward's duration."""
    clock = Clock()
    registry = reg.Registry()
    audit = AuditLog()
    books = Bookkeeper(registry, audit)
    config = _config(ttl=1)
    tunnel = Tunnel(_SlowForward(clock), config, tokens.generate(), observers=[books], clock=clock)
    try:
        tunnel.start()
        assert tunnel.wait(5.0)
        time.sleep(0.3)
        leftovers = {
            "record": registry.record_path(tunnel.id).exists(),
            "control socket": registry.socket_path(tunnel.id).exists(),
            "threads": _threads_of(tunnel.id),
        }
        kinds = [entry["event"] for entry in audit.read(tunnel.id)]
        assert leftovers == {"record": False, "control socket": False, "threads": []}, kinds
        assert kinds[-1] == "stopped", kinds  # not a `started` after the `stopped`
    finally:
        # Whatever the verdict, end what the publication started, or pytest never exits.
        publisher, control = books._publisher, books._control
        if publisher is not None:
            publisher.close()
        if control is not None:
            control.close()


class _LateArrival(StubSession):
    """The OpenSSH engine: the relay loop accepts on the gate socket until the forward is
    cancelled (``ssh -O cancel``), so a client that connects just as the share stops is
    handed over after teardown began. Here it arrives while the forward is being cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.client: socket.socket | None = None
        self._on_stream: StreamHandler | None = None

    def forward(
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Listener:
        self._on_stream = on_stream
        return Forward(bind, port or 40123, self._cancel)

    def _cancel(self) -> None:
        assert self._on_stream is not None
        ours, self.client = socket.socketpair()
        self._on_stream(SocketStream(ours, ("127.0.0.1", 0)))


def test_a_connection_turned_away_at_the_door_is_reported_closed_and_audited(
    sandbox: Sandbox,
) -> None:
    """A connection refused at the door (``shutting-down``, ``max-failures``) is reported
    closed too, and so audited with its reason, as every other refusal is."""
    session = _LateArrival()
    seen = EventLog()
    audit = AuditLog()
    books = Bookkeeper(reg.Registry(), audit)
    tunnel = Tunnel(session, _config(ttl=600), tokens.generate(), observers=[books, seen])
    tunnel.start()
    tunnel.close()
    try:
        assert session.client is not None
        refused = [e for e in seen.events if e.kind == "connection"]
        closed = [e for e in seen.events if e.kind == "connection-closed"]
        assert [e.reason for e in refused] == ["shutting-down"]  # type: ignore[attr-defined]
        assert closed_by_peer(session.client)
        audited = [e for e in audit.read(tunnel.id) if e["event"] == "connection"]
        assert (len(closed), len(audited)) == (1, 1), (closed, audited)
    finally:
        if session.client is not None:
            session.client.close()


class _SignalledWhileAnnounced:
    """An observer whose ``started`` is cut short as a stop signal cuts the start (the signal
    handler raises click's Exit while no tunnel is known to the console yet)."""

    def started(self, tunnel: object) -> None:
        raise click.exceptions.Exit(0)

    def event(self, event: object) -> None:
        """Nothing to record."""

    def flush(self) -> None:
        """Nothing to write."""

    def close(self) -> None:
        """Nothing held."""


def test_a_signal_while_the_start_is_announced_ends_the_tunnel_it_began(sandbox: Sandbox) -> None:
    registry = reg.Registry()
    books = Bookkeeper(registry, AuditLog())
    observers = [books, _SignalledWhileAnnounced()]
    tunnel = Tunnel(StubSession(), _config(ttl=600), tokens.generate(), observers=observers)
    with pytest.raises(click.exceptions.Exit):
        tunnel.start()
    assert tunnel.wait(5.0)
    assert tunnel.stop_reason is not None and tunnel.stop_reason.value == "error"
    assert wait_for(lambda: not _threads_of(tunnel.id)), _threads_of(tunnel.id)
    assert not registry.record_path(tunnel.id).exists()
    assert not registry.socket_path(tunnel.id).exists()
