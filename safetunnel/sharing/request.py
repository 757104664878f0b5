"""What the user asked a share to do, and the checks that click would have made on it."""

from __future__ import annotations

from dataclasses import dataclass

from safetunnel.errors import ConfigError
from safetunnel.gate.policy import GateProtocol
from safetunnel.sharing import options


@dataclass
class ShareRequest:
    """What the user asked for, as parsed by click (or passed to the Python API).

    ``ttl`` None means the ``default_ttl`` of config.toml.
    """

    local: str | int
    host: str | None = None
    ttl: int | None = None
    idle: int | None = None
    remote_port: int = options.DEFAULT_REMOTE_PORT
    public: bool = False
    protocol: GateProtocol = options.DEFAULT_PROTOCOL
    yes: bool = False
    identity: str | None = None
    known_hosts: str | None = None
    token_file: str | None = None
    keep_token_file: bool = False  # leave token_file in place when the share ends
    max_connections: int = options.DEFAULT_MAX_CONNECTIONS
    max_failures: int | None = None
    keepalive: float = options.DEFAULT_KEEPALIVE
    builtin_gateway: bool = False  # force the built-in gateway (demo), whatever the default host
    log_path: str | None = None  # --background: where the detached tunnel's output goes
    engine: options.EngineChoice | None = None  # None: config.toml's engine, else auto
    reconnect: bool = True  # replace a lost SSH session within the TTL instead of ending
    confirm_port: int | None = None  # the typed confirmation given in advance (--confirm-port)
    tls: bool | None = None  # None: TLS for public shares (and with tls_cert), plain otherwise
    tls_cert: str | None = None  # the user's certificate (PEM) instead of a made one
    tls_key: str | None = None  # its private key (PEM, unencrypted); both or neither


def serves_tls(request: ShareRequest) -> bool:
    """Whether the remote side speaks TLS: asked for, or by default on a public share (where
    the token would otherwise cross networks in clear text)."""
    if request.tls is not None:
        return request.tls
    return request.public or request.tls_cert is not None


def check_request(request: ShareRequest) -> None:
    """Refuse values the CLI's option types would refuse; the Python API has no click."""
    for bad, message in [*_problems(request), *_tls_problems(request)]:
        if bad:
            raise ConfigError(message)


def _problems(request: ShareRequest) -> list[tuple[bool, str]]:
    return [
        (request.ttl is not None and request.ttl <= 0, "ttl must be a positive duration"),
        (request.idle is not None and request.idle <= 0, "idle must be a positive duration"),
        (
            request.remote_port not in options.REMOTE_PORT,
            f"remote_port must be {options.REMOTE_PORT.describe()} (0: server picks)",
        ),
        (
            request.max_connections not in options.MAX_CONNECTIONS,
            f"max_connections must be {options.MAX_CONNECTIONS.describe()}",
        ),
        (
            request.max_failures is not None and request.max_failures not in options.MAX_FAILURES,
            f"max_failures must be {options.MAX_FAILURES.describe()}",
        ),
        (
            request.keepalive not in options.KEEPALIVE,
            f"keepalive must be {options.KEEPALIVE.describe()} seconds",
        ),
        (
            request.keep_token_file and not request.token_file,
            "keep_token_file needs a token_file (--keep-token-file needs --token-file)",
        ),
        (
            request.engine is not None and request.engine not in options.ENGINES,
            f"engine must be one of {', '.join(options.ENGINES)}",
        ),
        (
            request.confirm_port is not None and not 1 <= request.confirm_port <= 65535,
            "confirm_port must be a port number from 1 to 65535",
        ),
        (
            request.protocol not in options.PROTOCOLS,
            f"protocol must be one of {', '.join(options.PROTOCOLS)}",
        ),
    ]


def _tls_problems(request: ShareRequest) -> list[tuple[bool, str]]:
    return [
        (
            (request.tls_cert is None) != (request.tls_key is None),
            "tls_cert and tls_key go together (--tls-cert FILE --tls-key FILE)",
        ),
        (
            request.tls is False and request.tls_cert is not None,
            "no TLS (--no-tls) and a certificate to serve (--tls-cert) contradict each other",
        ),
    ]
