"""Bad share input is refused before anything is probed or connected, with the documented codes:
usage errors (exit 2) from the CLI, ConfigError from the Python API, which has no click."""

from __future__ import annotations

import pytest
from conftest import Sandbox
from e2e import run

import safetunnel
from safetunnel.errors import ConfigError


@pytest.mark.parametrize("port", ["0", "99999", "abc", "10.0.0.5:80"])
def test_bad_port_is_a_usage_error(sandbox: Sandbox, port: str) -> None:
    result = run(["share", port, "--yes"], sandbox.env)
    assert result.returncode == 2, result.stderr
    assert "Invalid value for 'PORT'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_identity_file_is_a_usage_error(sandbox: Sandbox) -> None:
    result = run(
        [
            "share",
            "62893",
            "--yes",
            "--host",
            "u@example.invalid",
            "--identity",
            str(sandbox.home / "no-such-key"),
        ],
        sandbox.env,
    )
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr


def test_public_through_the_builtin_gateway_is_refused_clearly(sandbox: Sandbox) -> None:
    from services import Service, echo

    with Service(echo) as service:
        result = run(["share", str(service.port), "--yes", "--public", "--ttl", "5s"], sandbox.env)
    assert result.returncode == 2, result.stderr
    assert "built-in gateway listens on this machine's loopback only" in result.stderr
    assert "hint: --public needs an SSH host" in result.stderr


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": "5s", "remote_port": 70000},
        {"ttl": "5s", "max_connections": 0},
        # A pool of two threads per connection: a million would be two million threads.
        {"ttl": "5s", "max_connections": 10**6},
        {"ttl": "5s", "max_connections": 4097},
        {"ttl": "5s", "keepalive": 0.1},
        {"ttl": "5s", "protocol": "ftp"},
        {"ttl": "5s", "idle": 0},
        {"ttl": "5s", "max_failures": 0},
        {"ttl": "5s", "keepalive": 0},
    ],
)
def test_api_refuses_what_the_cli_refuses(sandbox: Sandbox, options: dict[str, object]) -> None:
    # Port 1 has nothing listening: a refusal here proves the check ran before the probe.
    with pytest.raises(ConfigError):
        safetunnel.share(1, **options)


def test_the_cli_bounds_max_connections_like_the_api(sandbox: Sandbox) -> None:
    result = run(["share", "1", "--yes", "--max-connections", "4097"], sandbox.env)
    assert result.returncode == 2, result.stderr
    assert "4097 is not in the range 1<=x<=4096" in result.stderr
