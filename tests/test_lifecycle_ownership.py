"""Who owns what in a share's life, over real sessions to the built-in gateway.

The prepared resources are handed to the tunnel in one step and closed once; observers are
started in order, see every event with ``stopped`` last, and are closed in reverse order after the
session is down; a failed start unwinds everything, the token file included.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import paramiko
import pytest
from conftest import Sandbox
from services import Service, echo
from tunnelkit import gateway_session

from safetunnel import tokens
from safetunnel.api import _ApiUI
from safetunnel.errors import ForwardRefused
from safetunnel.sharing.events import TunnelEvent
from safetunnel.sharing.flow import open_share
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.request import ShareRequest
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.client import SSHSession
from safetunnel.ssh.gateway import Gateway


class Recorder:
    """An observer that writes down each call, and whether the session was still up at close."""

    def __init__(self, name: str, calls: list[tuple[str, ...]], session: SSHSession) -> None:
        self.name, self.calls, self.session = name, calls, session
        self.fail_start: BaseException | None = None

    def started(self, tunnel: Tunnel) -> None:
        self.calls.append((self.name, "started"))
        if self.fail_start is not None:
            raise self.fail_start

    def event(self, event: TunnelEvent) -> None:
        self.calls.append((self.name, event.kind))

    def close(self) -> None:
        self.calls.append((self.name, "close", "session up" if self.session.is_active() else ""))


class Owned:
    """Resources as the share flow hands them over: an ExitStack, here with counters."""

    def __init__(self, session: SSHSession) -> None:
        self.stack = contextlib.ExitStack()
        self.closes = 0
        self.seen: list[type[BaseException] | None] = []
        self.stack.callback(session.close)
        self.stack.push(self._exit)

    def _exit(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> bool:
        self.closes += 1
        self.seen.append(exc_type)
        return False


def connect(builtin_gateway: tuple[Gateway, paramiko.PKey]) -> SSHSession:
    gateway, key = builtin_gateway
    return gateway_session(gateway, key)


def config(service: Service, remote_port: int = 0) -> TunnelConfig:
    return TunnelConfig(
        local=("127.0.0.1", service.port),
        ttl=60,
        ssh_host="built-in",
        tunnel_id="st-abc123",
        remote_port=remote_port,
    )


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def test_observers_in_order_stopped_last_closed_in_reverse_after_the_session(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    session = connect(builtin_gateway)
    calls: list[tuple[str, ...]] = []
    first, second = Recorder("books", calls, session), Recorder("ui", calls, session)
    owned = Owned(session)
    with Service(echo) as service:
        tunnel = Tunnel(
            session,
            config(service),
            tokens.generate(),
            observers=[first, second],
            resources=owned.stack,
        )
        tunnel.start()
        tunnel.close()
        tunnel.close()  # idempotent: nothing is closed twice
    assert calls == [
        ("books", "started"),
        ("ui", "started"),
        ("books", "started"),
        ("ui", "started"),
        ("books", "stopped"),
        ("ui", "stopped"),
        ("ui", "close", ""),
        ("books", "close", ""),
    ]
    assert owned.closes == 1 and owned.seen == [None]
    assert tunnel.stop_reason is StopReason.KILLED and tunnel.exit_code == 0


def test_an_observer_that_fails_to_start_aborts_and_unwinds_everything(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    session = connect(builtin_gateway)
    calls: list[tuple[str, ...]] = []
    first, second = Recorder("books", calls, session), Recorder("ui", calls, session)
    first.fail_start = OSError("no space left for the record")
    owned = Owned(session)
    with Service(echo) as service:
        tunnel = Tunnel(
            session,
            config(service),
            tokens.generate(),
            observers=[first, second],
            resources=owned.stack,
        )
        with pytest.raises(OSError, match="no space left"):
            tunnel.start()
    assert tunnel.wait(0)
    assert calls == [
        ("books", "started"),
        ("books", "stopped"),
        ("ui", "stopped"),
        ("ui", "close", ""),
        ("books", "close", ""),
    ]
    assert owned.closes == 1 and owned.seen == [OSError]  # told that the start failed
    assert tunnel.stop_reason is StopReason.ERROR and tunnel.exit_code == 1
    assert not session.is_active()


def test_a_refused_forward_closes_the_resources_once_with_the_error(
    builtin_gateway: tuple[Gateway, paramiko.PKey],
) -> None:
    session = connect(builtin_gateway)
    calls: list[tuple[str, ...]] = []
    owned = Owned(session)
    with Service(echo) as service, taken_port() as port:
        tunnel = Tunnel(
            session,
            config(service, remote_port=port),
            tokens.generate(),
            observers=[Recorder("books", calls, session)],
            resources=owned.stack,
        )
        with pytest.raises(ForwardRefused):
            tunnel.start()
        tunnel.close()
    assert calls == [("books", "close", "")]  # never started, no events
    assert owned.closes == 1 and owned.seen == [ForwardRefused]


def test_a_share_that_fails_to_start_leaves_no_gateway_record_or_token_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    before = {t.name for t in threading.enumerate()}
    with Service(echo) as service, taken_port() as port:
        request = ShareRequest(
            local=service.port,
            ttl=30,
            yes=True,
            remote_port=port,
            token_file=str(token_file),
            builtin_gateway=True,
        )
        with pytest.raises(ForwardRefused, match="built-in gateway could not listen"):
            open_share(request, _ApiUI())
    assert not token_file.exists()
    tunnels = sandbox.state_dir / "tunnels"
    assert not tunnels.exists() or not any(tunnels.iterdir())  # no record, no socket
    leftover = [t for t in threading.enumerate() if t.name not in before and t.is_alive()]
    assert leftover == [], [t.name for t in leftover]
