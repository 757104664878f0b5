"""The Python API: ``with safetunnel.share(62893, ttl="30m") as t: ...``.

It never prompts: calling it is the confirmation. Host-key rules still apply (an unknown key
raises HostKeyUnknown; pin it first with ``safetunnel hosts trust``), and so does max_ttl.
"""

from __future__ import annotations

from safetunnel.durations import parse_duration
from safetunnel.gate.policy import GateProtocol
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.flow import ShareRequest, open_share
from safetunnel.sharing.summary import ShareSummary
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.ssh.target import SSHTarget


class _ApiUI:
    """A ShareUI that never asks: the caller of the API has already decided."""

    interactive = False
    preconfirmed = True

    def trust_host_key(self, target: SSHTarget, algorithm: str, fingerprint: str) -> bool:
        return False

    def confirm(self, summary: ShareSummary, typed: bool) -> bool:
        return True

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource:
        return KeyringAuthSource(host_label=target.label or target.display)

    def attach(self, tunnel: Tunnel, summary: ShareSummary) -> None:
        """Nothing to render; callers read the Tunnel's attributes."""


def share(
    port: int | str,
    *,
    ttl: str | int = "30m",
    host: str | None = None,
    idle: str | int | None = None,
    remote_port: int = 0,
    public: bool = False,
    protocol: GateProtocol = "auto",
    identity: str | None = None,
    known_hosts: str | None = None,
    max_connections: int = 256,
    max_failures: int | None = None,
    keepalive: float = 10.0,
) -> Tunnel:
    """Share 127.0.0.1:``port`` and return the started :class:`Tunnel` (a context manager).

    ``ttl`` and ``idle`` take seconds or strings such as ``"30m"``. ``host`` is as for the CLI;
    ``None`` uses the default host, else the built-in loopback gateway. The tunnel exposes
    ``remote_port``, ``token``, ``expires_at`` and ``close()``.
    """
    request = ShareRequest(
        local=port,
        host=host,
        ttl=_seconds(ttl),
        idle=_seconds(idle),
        remote_port=remote_port,
        public=public,
        protocol=protocol,
        yes=True,
        identity=identity,
        known_hosts=known_hosts,
        max_connections=max_connections,
        max_failures=max_failures,
        keepalive=keepalive,
    )
    return open_share(request, _ApiUI())


def _seconds(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_duration(value)
