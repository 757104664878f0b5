"""Publishes one running tunnel: its record, its control socket and its audit lines.

The tunnel itself knows nothing about files. This object subscribes to the tunnel's events and is
one of the resources the tunnel closes at teardown (last, so that ``kill`` sees the record vanish
only when everything else is already down).
"""

from __future__ import annotations

from typing import Any

from safetunnel.errors import SafetunnelError
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.control import ControlServer
from safetunnel.registry.publish import RecordPublisher
from safetunnel.registry.records import Registry, TunnelRecord, current_process_start_time
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.timefmt import iso_z

_RECORD_FIELDS = set(TunnelRecord.__dataclass_fields__) - {"pid_start_time", "log_path"}


class Bookkeeper:
    """Record (refreshed every 2 s), control socket (status/stop/extend) and audit log."""

    def __init__(
        self, tunnel: Tunnel, registry: Registry, audit: AuditLog, log_path: str | None = None
    ) -> None:
        self._tunnel = tunnel
        self._registry = registry
        self._audit = audit
        self._log_path = log_path
        self._start_time = current_process_start_time()
        self._publisher = RecordPublisher(registry, self.snapshot)
        self._control = ControlServer(
            registry.socket_path(tunnel.id),
            {"status": self._status, "stop": self._stop, "extend": self._extend},
        )
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Listen on the control socket and publish the record; both errors abort the share."""
        self._control.start()
        try:
            self._publisher.start()
        except BaseException:
            self._control.close()
            raise
        self._started = True

    def close(self) -> None:
        """Close the socket, then remove the record. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._control.close()
        self._publisher.close()

    def snapshot(self) -> TunnelRecord:
        status = self._tunnel.status()
        fields = {key: value for key, value in status.items() if key in _RECORD_FIELDS}
        return TunnelRecord(pid_start_time=self._start_time, log_path=self._log_path, **fields)

    # -- events -> audit -------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        fields = {k: v for k, v in event.items() if k not in {"event", "id", "token", "url"}}
        if kind == "connection-closed":
            self._audit.write("connection", self._tunnel.id, **fields)
        elif kind in {"started", "warning", "stopped"}:
            self._audit.write(str(kind), self._tunnel.id, **fields)

    # -- control handlers (run on the control thread; they only ask, never tear down) ----------

    def _status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return self._tunnel.status()

    def _stop(self, _args: dict[str, Any]) -> dict[str, Any]:
        self._tunnel.request_stop("killed")
        return {}

    def _extend(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise SafetunnelError("extend needs a positive whole number of seconds")
        expires = iso_z(self._tunnel.extend(seconds))
        self._publisher.publish_now()
        self._audit.write("extended", self._tunnel.id, by=seconds, expires_at=expires)
        return {"expires_at": expires}
