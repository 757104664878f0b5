"""End to end: the Python API, ``with safetunnel.share(...) as t:``, against the real sshd and the
built-in gateway. It never prompts, and the host-key rules still hold."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e import E2E, assert_port_released, http_get, port_open
from services import http_keepalive
from sshd import SSHD

import safetunnel
from safetunnel.errors import HostKeyUnknown

pytestmark = pytest.mark.sshd


def _threads() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


def test_api_share_through_sshd_serves_and_frees_the_port(e2e: E2E, sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    before = _threads()
    with safetunnel.share(
        service.port,
        ttl="5s",
        host=f"{sshd.user}@127.0.0.1:{sshd.port}",
        identity=str(sshd.client_key_path),
        known_hosts=str(sshd.known_hosts),
    ) as tunnel:
        assert tunnel.remote_port > 0
        assert tunnel.token.startswith("st_")
        left = tunnel.expires_at - datetime.now(UTC)
        assert timedelta(seconds=3) < left <= timedelta(seconds=5)
        ok = http_get(tunnel.remote_port, "/api", {"X-Safetunnel-Token": tunnel.token})
        assert (ok.status, ok.body) == (200, b"hello /api")
        assert http_get(tunnel.remote_port, "/api").status == 401
        assert len(e2e.records()) == 1
        port, token = tunnel.remote_port, tunnel.token
    assert tunnel.stop_reason == "killed"
    assert_port_released(port)
    assert e2e.records() == []
    leftover = [t for t in threading.enumerate() if t.name not in before]
    assert leftover == [], [(t.name, type(t).__name__, t.is_alive()) for t in leftover]
    e2e.servers.append(sshd)
    e2e.tokens.append(token)


def test_api_share_through_the_builtin_gateway(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    with safetunnel.share(service.port, ttl=5) as tunnel:
        assert (
            http_get(tunnel.remote_port, "/b", {"X-Safetunnel-Token": tunnel.token}).status == 200
        )
        port = tunnel.remote_port
        e2e.tokens.append(tunnel.token)
    assert not port_open(port)


def test_api_never_prompts_on_an_unknown_host_key(e2e: E2E, sshd: SSHD, tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    empty = tmp_path / "known_hosts"
    empty.write_bytes(b"")
    with pytest.raises(HostKeyUnknown) as raised:
        safetunnel.share(
            service.port,
            ttl="5s",
            host=f"{sshd.user}@127.0.0.1:{sshd.port}",
            identity=str(sshd.client_key_path),
            known_hosts=str(empty),
        )
    assert raised.value.exit_code == 4
    assert "SHA256:" in str(raised.value)
    assert empty.read_bytes() == b""
    assert not (e2e.sandbox.config_dir / "known_hosts").exists()
    assert "tcpip-forward" not in sshd.log_text()
    assert e2e.records() == []


def test_api_without_ttl_uses_default_ttl_from_config(e2e: E2E) -> None:
    # The CLI has always honoured default_ttl; the API used to fix 30m in its signature.
    config = e2e.sandbox.config_dir
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('default_ttl = "2m"\n')
    service = e2e.service(http_keepalive)
    with safetunnel.share(service.port) as tunnel:
        e2e.tokens.append(tunnel.token)
        left = tunnel.expires_at - datetime.now(UTC)
        assert timedelta(seconds=60) < left <= timedelta(minutes=2)
