"""Shared fixtures: a real OpenSSH sshd (tests/sshd.py) and the built-in gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from sshd import SSHD, SSHDFactory, start_sshd

from safetunnel.ssh.gateway import Gateway, start_builtin


@pytest.fixture
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHDFactory]:
    """Start sshd variants: ``sshd_factory(gateway_ports=True, authorized_options="restrict,...")``.

    Every daemon started through the factory is stopped at teardown, even when the test failed.
    """
    started: list[SSHD] = []

    def make(**options: object) -> SSHD:
        workdir: Path = tmp_path_factory.mktemp("sshd")
        server = start_sshd(workdir, **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sshd(sshd_factory: SSHDFactory) -> SSHD:
    """A default sshd: GatewayPorts no, unrestricted client key, LogLevel DEBUG1."""
    return sshd_factory()


@pytest.fixture
def builtin_gateway() -> Iterator[tuple[Gateway, paramiko.PKey]]:
    """The in-process gateway on 127.0.0.1:0 and its client key; closed at teardown.

    Connect with ``open_session(SSHTarget(*gateway.address), hostkeys=None, on_unknown_key=None,
    auth=None, client_key=key, expected_key=gateway.host_key)``.
    """
    gateway, client_key = start_builtin()
    try:
        yield gateway, client_key
    finally:
        gateway.close()
