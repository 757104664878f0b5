"""The Python API's TLS options against a real sshd, with the command line's rules: a public
share serves TLS unless ``tls=False`` says otherwise, ``tls=True`` works on loopback, your own
certificate is served from ``tls_cert``/``tls_key``, and contradictions are refused before
anything connects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from certkit import write_pair
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from e2e import E2E, http_get, read_response, request_bytes
from services import http_keepalive
from sshd import SSHD, SSHDFactory
from test_e2e_public_tls import served_pin, tls_client

import safetunnel
from safetunnel.errors import ConfigError

pytestmark = pytest.mark.sshd


@pytest.fixture
def public_sshd(sshd_factory: SSHDFactory) -> SSHD:
    return sshd_factory(gateway_ports="clientspecified")


def through(sshd: SSHD) -> dict[str, Any]:
    return {
        "host": f"{sshd.user}@127.0.0.1:{sshd.port}",
        "identity": str(sshd.client_key_path),
        "known_hosts": str(sshd.known_hosts),
    }


def tls_status(port: int, token: str) -> int:
    with tls_client(port) as conn:
        conn.sendall(request_bytes("/tls", {"X-Safetunnel-Token": token}))
        return read_response(conn, 10).status


def test_a_public_share_serves_tls_by_default(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    with safetunnel.share(service.port, ttl="30s", public=True, **through(public_sshd)) as tunnel:
        e2e.tokens.append(tunnel.token)
        assert tunnel.tls_pin is not None
        assert served_pin(tunnel.remote_port) == tunnel.tls_pin
        assert tls_status(tunnel.remote_port, tunnel.token) == 200
    e2e.servers.append(public_sshd)


def test_a_public_share_in_clear_text_takes_tls_false(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    argv = through(public_sshd)
    with safetunnel.share(service.port, ttl="30s", public=True, tls=False, **argv) as tunnel:
        e2e.tokens.append(tunnel.token)
        assert tunnel.tls_pin is None
        answer = http_get(tunnel.remote_port, "/plain", {"X-Safetunnel-Token": tunnel.token})
        assert answer.status == 200
    e2e.servers.append(public_sshd)


def test_tls_on_a_loopback_share(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    with safetunnel.share(service.port, ttl="30s", tls=True) as tunnel:
        e2e.tokens.append(tunnel.token)
        assert tunnel.tls_pin == served_pin(tunnel.remote_port)
        assert tls_status(tunnel.remote_port, tunnel.token) == 200


def test_own_certificate_from_paths(e2e: E2E, public_sshd: SSHD, tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    cert, key = write_pair(tmp_path, datetime.now(UTC) + timedelta(days=5))
    with safetunnel.share(
        service.port,
        ttl="30s",
        public=True,
        tls_cert=Path(cert),
        tls_key=Path(key),
        **through(public_sshd),
    ) as tunnel:
        e2e.tokens.append(tunnel.token)
        assert tunnel.tls_pin is None  # a CA vouches for it: nothing to pin
        with tls_client(tunnel.remote_port) as conn:
            assert conn.getpeercert(binary_form=True) == _der(cert)
    e2e.servers.append(public_sshd)


def _der(pem_path: str) -> bytes:
    cert = x509.load_pem_x509_certificate(Path(pem_path).read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "options",
    [
        {"tls_cert": "/nonexistent/cert.pem"},
        {"tls": False, "tls_cert": "/c.pem", "tls_key": "/k.pem"},
    ],
)
def test_contradictions_are_refused_before_connecting(e2e: E2E, options: dict[str, Any]) -> None:
    service = e2e.service(http_keepalive)
    with pytest.raises(ConfigError):
        safetunnel.share(service.port, ttl="30s", **options)
    assert e2e.records() == []
