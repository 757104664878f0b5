"""Shared fixtures: a real OpenSSH sshd (tests/sshd.py) and the built-in gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SSHD, SSHDFactory, start_sshd


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
