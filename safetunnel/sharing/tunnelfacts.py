"""What a tunnel says about itself: the facts its record, ``status`` and ``started`` share.

A mixin of :class:`~safetunnel.sharing.tunnel.Tunnel`, apart from its lifecycle: these are
views of the tunnel's state, computed on demand, never stored, and never holding the token
except where the ``started`` event shows it (and only when no token file keeps it off screen).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from safetunnel import tokens
from safetunnel.addresses import format_hostport
from safetunnel.sharing import events
from safetunnel.sharing.recipients import TunnelRecipients
from safetunnel.sharing.stats import TunnelStats
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.timefmt import iso_z


class TunnelFacts(TunnelRecipients):
    """The tunnel supplies these attributes; see :class:`~safetunnel.sharing.tunnel.Tunnel`."""

    config: TunnelConfig
    id: str
    token: str
    stats: TunnelStats
    started_at: datetime
    _token_hash: bytes

    @property
    def remote_port(self) -> int:
        raise NotImplementedError

    @property
    def expires_at(self) -> datetime:
        raise NotImplementedError

    @property
    def state(self) -> str:
        raise NotImplementedError

    def _facts(self) -> dict[str, Any]:
        """What both the record and the ``started`` event say, in their key order."""
        return {
            "id": self.id,
            "pid": os.getpid(),
            "local": format_hostport(*self.config.local),
            "ssh_host": self.config.ssh_host,
            "remote_bind": self.config.remote_bind,
            "remote_port": self.remote_port,
            "protocol": self.config.protocol,
            "started_at": iso_z(self.started_at),
            "expires_at": iso_z(self.expires_at),
        }

    @property
    def tls_pin(self) -> str | None:
        """The pin of the certificate made for this share (None: no TLS, or the user's own)."""
        return self.config.tls_pin

    def status(self) -> dict[str, Any]:
        """Everything a record or `safetunnel status` shows; never the token."""
        prefix = tokens.hash_prefix(self._token_hash)
        extra: dict[str, Any] = {"token_hash_prefix": prefix, "engine": self.config.engine}
        extra |= {"state": self.state, "recipients": self.recipients_status()}
        extra |= {"tls": self.config.tls is not None, "tls_pin": self.tls_pin}
        extra["token_files"] = list(self.config.token_files)
        return {**self._facts(), **extra, **self.stats.snapshot()}

    def started_event(self) -> events.Started:
        token = self.token if self.config.show_token else None
        url = self.config.link(self.remote_port, token)
        ticket = self.config.ticket(self.remote_port, token, self.expires_at)
        return events.Started(
            **self._facts(),
            token=token,
            url=url,
            engine=self.config.engine,
            ticket=ticket,
            tls_pin=self.config.tls_pin,
        )
