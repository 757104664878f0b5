"""Recipients of a running share: minting a token per person, revoking it, and who used which.

A mixin of :class:`~safetunnel.sharing.tunnel.Tunnel`. The gates check tokens against the
policy's live recipient book; this side adds to it, removes from it (closing the connections
that presented a revoked token), and keeps what ``status`` shows about each recipient. A minted
token is handed back once, inside its ticket, and kept nowhere but as a digest in the book.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from safetunnel import tokens
from safetunnel.errors import UsageError
from safetunnel.gate.recipients import DEFAULT_NAME, RecipientError
from safetunnel.sharing.connections import TunnelConnections
from safetunnel.sharing.pump import Pump
from safetunnel.sharing.stats import ConnCounters
from safetunnel.timefmt import iso_z, utc_now


@dataclass
class RecipientEntry:
    """What ``status`` shows of one recipient: never its token or digest."""

    name: str
    created: str
    connections: int = 0
    revoked: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "connections": self.connections,
            "revoked": self.revoked,
        }


class TunnelRecipients(TunnelConnections):
    """Mint, revoke and count; the tunnel supplies its remote port, expiry and config."""

    _ledger: dict[str, RecipientEntry]
    _ledger_lock: threading.Lock

    @property
    def remote_port(self) -> int:
        raise NotImplementedError

    @property
    def expires_at(self) -> datetime:
        raise NotImplementedError

    def _init_recipients(self) -> None:
        self._ledger_lock = threading.Lock()
        self._ledger = {DEFAULT_NAME: RecipientEntry(DEFAULT_NAME, iso_z(utc_now()))}

    def mint_recipient(self, name: str) -> dict[str, Any]:
        """A new token for ``name``; returns its ticket (or, with no ticket to carry it, the
        token itself): the one time it leaves the share."""
        token = tokens.generate()
        try:
            self._pump_hooks.policy.mint(name, token)
        except RecipientError as err:
            raise UsageError(str(err)) from None
        with self._ledger_lock:
            self._ledger[name] = RecipientEntry(name, iso_z(utc_now()))
        ticket = self.config.ticket(self.remote_port, token, self.expires_at)
        return {"name": name, "ticket": ticket} if ticket else {"name": name, "token": token}

    def revoke_recipient(self, name: str) -> dict[str, Any]:
        """Refuse ``name``'s token from now on and close the connections that presented it."""
        try:
            self._pump_hooks.policy.recipients.revoke(name)
        except RecipientError as err:
            raise UsageError(str(err)) from None
        with self._ledger_lock:
            entry = self._ledger.get(name)
            if entry is not None:
                entry.revoked = iso_z(utc_now())
        with self._pumps_lock:
            doomed: list[Pump] = [p for p in self._pumps.values() if p.presented(name)]
        for pump in doomed:
            pump.drop("revoked")  # outside the lock: closing reports back through _on_finished
        return {"name": name, "closed": len(doomed)}

    def _on_decision(self, counters: ConnCounters, allowed: bool, reason: str) -> None:
        if allowed and counters.recipient:
            with self._ledger_lock:
                entry = self._ledger.get(counters.recipient)
                if entry is not None:
                    entry.connections += 1
        super()._on_decision(counters, allowed, reason)

    def recipients_status(self) -> list[dict[str, Any]]:
        with self._ledger_lock:
            return [entry.to_json() for entry in self._ledger.values()]
