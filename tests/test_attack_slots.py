"""Attack: nobody without the token can keep a token holder out of a share.

The attacker (benchmarks/attackload.py, its own process) opens 300 connections that never send a
byte, then keeps 300 clients sending wrong-token requests back to back; during that flood a client
with the right token makes 6 requests, one after the other. Each must get its 200.

Before the fix, idle connections held the share's 256 slots until their header timeout, and
every refused connection slept its failure delay (up to 5 s) on its pump thread while keeping its
slot: the token holder was turned away as ``max-connections``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from services import Service, http_keepalive
from tunnelkit import gateway_session

from safetunnel import tokens
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.gateway import Gateway

ATTACKLOAD = Path(__file__).resolve().parent.parent / "benchmarks" / "attackload.py"


def attack(spec: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
    """Run one attack (benchmarks/attackload.py) in its own process; its final JSON line."""
    done = subprocess.run(
        [sys.executable, str(ATTACKLOAD)],
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def share(builtin_gateway: tuple[Gateway, paramiko.PKey]) -> Iterator[tuple[Tunnel, str]]:
    """An in-process share of an HTTP service through the built-in gateway, default limits."""
    gateway, key = builtin_gateway
    token = tokens.generate()
    with Service(http_keepalive) as service:
        session = gateway_session(gateway, key)
        config = TunnelConfig(local=("127.0.0.1", service.port), ttl=600, ssh_host="built-in")
        tunnel = Tunnel(session, config, token)
        tunnel.start()
        try:
            yield tunnel, token
        finally:
            tunnel.close()


@pytest.mark.slow
def test_a_token_holder_gets_in_during_a_wrong_token_flood(share: tuple[Tunnel, str]) -> None:
    tunnel, token = share
    result = attack(
        {
            "mode": "flood",
            "port": tunnel.remote_port,
            "token": token,
            "idle": 300,
            "wrong": 300,
            "valid": 6,
        }
    )
    assert result["valid_ok"] == result["valid"], (
        f"{result['valid_ok']} of {result['valid']} valid requests got 200 during a flood of "
        f"{result['wrong_sent']} wrong-token requests and {result['idle_opened']} idle "
        f"connections (statuses {result['statuses']})"
    )
    assert tunnel.stop_reason is None  # the flood did not end the share either
