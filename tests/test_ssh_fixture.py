from __future__ import annotations

import socket
import subprocess

import psutil
import pytest
from sshd import SSHD, SSHDFactory

pytestmark = pytest.mark.sshd


def test_sshd_accepts_the_fixture_key_with_openssh_client(sshd: SSHD) -> None:
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(sshd.client_key_path),
            "-p",
            str(sshd.port),
            "-o",
            f"UserKnownHostsFile={sshd.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{sshd.user}@{sshd.host}",
            "echo",
            "fixture-ok",
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"fixture-ok"
    with socket.create_connection((sshd.host, sshd.port), 2) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-OpenSSH")


def test_stop_is_idempotent_and_frees_the_port(sshd_factory: SSHDFactory) -> None:
    server = sshd_factory(gateway_ports=True)
    assert "GatewayPorts yes" in server.config_path.read_text()
    server.stop()
    server.stop()
    assert server.process.poll() is not None
    # Parallel test workers start daemons on random ports too; one may take the freed port at
    # once, and then the port is still free of *this* daemon.
    listeners = {
        conn.pid
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == server.port
    }
    if not listeners:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), 1).close()
