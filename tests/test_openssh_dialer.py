"""The OpenSSH dialer's decisions when its master dies: replace it once, never a newer one, and
stop at the first failed login. What ``_open`` would start (an ssh master and its forward) is
stood in for by a unix socket here; ``test_e2e_connect_openssh.py`` runs the real thing."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from conftest import Sandbox

from safetunnel.errors import AuthFailed, ConnectionLost, SSHError
from safetunnel.receiving.opensshdial import OpenSSHDialer
from safetunnel.ssh.target import SSHTarget


class StandInMaster:
    def __init__(self) -> None:
        self.closed = False

    def alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


class StandInDialer(OpenSSHDialer):
    def __init__(self) -> None:
        super().__init__(SSHTarget("127.0.0.1", 22, "me", ()), "SHA256:pin", ("127.0.0.1", 9))
        self.opened = 0
        self.listeners: list[socket.socket] = []
        self.refuse: Exception | None = None

    def _open(self, interactive: bool) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.opened += 1
        assert self._sockets is not None
        path = self._sockets / f"g-{self.opened}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen()
        self.listeners.append(listener)
        self._master, self._path = StandInMaster(), path  # type: ignore[assignment]


@pytest.fixture
def dialer(sandbox: Sandbox) -> Iterator[StandInDialer]:
    made = StandInDialer()
    made.start()  # its sockets in the sandbox's state directory
    yield made
    made.close()
    for listener in made.listeners:
        listener.close()


def test_a_master_whose_socket_fails_is_replaced_once(dialer: StandInDialer) -> None:
    first = dialer._path
    dialer.listeners[0].close()  # the master still runs, but takes no connection
    channel = dialer.dial(("127.0.0.1", 5))
    assert channel is not None
    channel.close()
    assert dialer.opened == 2
    # A dial that failed on the first master's socket too, queued behind the replacement, must
    # not end the new one (and every connection through it).
    assert dialer._live_forward(first) == dialer._path != first
    assert dialer.opened == 2


def test_after_a_failed_login_the_dials_queued_behind_it_end_at_once(
    dialer: StandInDialer,
) -> None:
    assert dialer._master is not None
    dialer._master.close()  # it died: unanswered keepalives
    dialer.refuse = SSHError("ssh: connect to host 127.0.0.1 port 22: Connection refused")
    with pytest.raises(ConnectionLost, match="could not be reopened: ssh: connect"):
        dialer.dial(("127.0.0.1", 5))
    dialer.refuse = None
    with pytest.raises(ConnectionLost):
        dialer.dial(("127.0.0.1", 5))
    assert dialer.opened == 1  # no second login after the first one failed


def test_a_refused_login_on_a_reopen_keeps_its_exit_code(dialer: StandInDialer) -> None:
    assert dialer._master is not None
    dialer._master.close()
    dialer.refuse = AuthFailed("Permission denied (publickey).")
    with pytest.raises(AuthFailed):
        dialer.dial(("127.0.0.1", 5))
