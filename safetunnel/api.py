"""The Python API: ``with safetunnel.share(62893, ttl="30m") as t: ...``.

It never prompts: calling it is the confirmation. Host-key rules still apply (an unknown key
raises HostKeyUnknown; pin it first with ``safetunnel hosts trust``), and so do ``max_ttl`` and
``default_ttl`` from config.toml, exactly as for ``safetunnel share``.

:func:`share` takes the command line's options: ``ttl``/``idle`` in seconds or as ``"30m"``
(``ttl`` None: config.toml's ``default_ttl``); ``host`` None: the default host, else the built-in
gateway; ``reconnect=False`` ends the tunnel on SSH loss. ``tls`` is ``--tls``/``--no-tls``: None
serves TLS on a public share (and with ``tls_cert``) and plain bytes on a loopback one; a public
share in clear text takes ``tls=False``, said in so many words. ``tls_cert``/``tls_key`` (PEM
files, both or neither) serve your own certificate instead of one made for the share. A started
:class:`Tunnel` exposes ``remote_port``, ``token``, ``expires_at``, ``tls_pin``, ``close()``...
"""

from __future__ import annotations

import os

from safetunnel.durations import parse_duration
from safetunnel.gate.policy import GateProtocol
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing import options
from safetunnel.sharing.flow import open_share
from safetunnel.sharing.observers import TunnelObserver
from safetunnel.sharing.request import ShareRequest
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

    def show(self, summary: ShareSummary) -> None:
        """Never called: the API is preconfirmed."""

    def auth_source(self, target: SSHTarget) -> KeyringAuthSource:
        return KeyringAuthSource(host_label=target.label or target.display)

    def observer(self, summary: ShareSummary) -> TunnelObserver[Tunnel] | None:
        """Nothing to render; callers read the Tunnel's attributes."""
        return None


def share(
    port: int | str,
    *,
    ttl: str | int | None = None,
    host: str | None = None,
    idle: str | int | None = None,
    remote_port: int = options.DEFAULT_REMOTE_PORT,
    public: bool = False,
    protocol: GateProtocol = options.DEFAULT_PROTOCOL,
    identity: str | None = None,
    known_hosts: str | None = None,
    max_connections: int = options.DEFAULT_MAX_CONNECTIONS,
    max_failures: int | None = None,
    keepalive: float = options.DEFAULT_KEEPALIVE,
    reconnect: bool = True,
    tls: bool | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
) -> Tunnel:
    """Share 127.0.0.1:``port``; the started :class:`Tunnel` (see the module docstring)."""
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
        reconnect=reconnect,
        tls=tls,
        tls_cert=_path(tls_cert),
        tls_key=_path(tls_key),
    )
    return open_share(request, _ApiUI())


def _path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def _seconds(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_duration(value)
