"""Publishes one running tunnel: its record, its control socket and its audit lines.

The tunnel itself knows nothing about files. This object is one of its observers, given first so
that it is closed last: ``kill`` sees the record vanish only when everything else is down. It
needs only the small :class:`Published` surface of a tunnel, so the registry layer does not
import the sharing layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from safetunnel.errors import SafetunnelError
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.control import ControlServer
from safetunnel.registry.publish import RecordPublisher
from safetunnel.registry.records import Registry, TunnelRecord, current_process_start_time
from safetunnel.timefmt import iso_z

_RECORD_FIELDS = set(TunnelRecord.__dataclass_fields__) - {"pid_start_time", "log_path"}
# Event kind -> audit entry kind. Connection decisions are not audited on their own: the
# connection's end carries the decision together with its bytes and duration.
_AUDITED = {
    "started": "started",
    "warning": "warning",
    "stopped": "stopped",
    "connection-closed": "connection",
}
# The token must never reach the audit file; the id is the entry's own field.
_NOT_AUDITED = {"event", "id", "token", "url"}


class Published(Protocol):
    """What the publication uses of a tunnel."""

    @property
    def id(self) -> str: ...
    def status(self) -> dict[str, Any]: ...
    def request_stop(self, reason: str) -> None: ...
    def extend(self, seconds: int) -> datetime: ...


class AuditedEvent(Protocol):
    @property
    def kind(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


class Bookkeeper:
    """Record (refreshed every 2 s), control socket (status/stop/extend) and audit log."""

    def __init__(self, registry: Registry, audit: AuditLog, log_path: str | None = None) -> None:
        self._registry = registry
        self._audit = audit
        self._log_path = log_path
        self._start_time = current_process_start_time()
        self._tunnel: Published | None = None
        self._control: ControlServer | None = None
        self._publisher: RecordPublisher | None = None
        self._closed = False

    def started(self, tunnel: Published) -> None:
        """Listen on the control socket and publish the record; both errors abort the share."""
        self._tunnel = tunnel
        control = ControlServer(
            self._registry.socket_path(tunnel.id),
            {"status": self._status, "stop": self._stop, "extend": self._extend},
        )
        control.start()
        self._control = control
        publisher = RecordPublisher(self._registry, self.snapshot)
        publisher.start()
        self._publisher = publisher

    def event(self, event: AuditedEvent) -> None:
        kind = _AUDITED.get(event.kind)
        if kind is None:
            return
        data = event.to_json()
        fields = {k: v for k, v in data.items() if k not in _NOT_AUDITED}
        self._audit.write(kind, str(data["id"]), **fields)

    def close(self) -> None:
        """Close the socket, then remove the record. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._control is not None:
            self._control.close()
        if self._publisher is not None:
            self._publisher.close()

    def snapshot(self) -> TunnelRecord:
        status = self._live().status()
        fields = {key: value for key, value in status.items() if key in _RECORD_FIELDS}
        return TunnelRecord(pid_start_time=self._start_time, log_path=self._log_path, **fields)

    def _live(self) -> Published:
        if self._tunnel is None:
            raise SafetunnelError("the tunnel is not started")
        return self._tunnel

    # -- control handlers (run on the control thread; they only ask, never tear down) ----------

    def _status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return self._live().status()

    def _stop(self, _args: dict[str, Any]) -> dict[str, Any]:
        self._live().request_stop("killed")
        return {}

    def _extend(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise SafetunnelError("extend needs a positive whole number of seconds")
        tunnel = self._live()
        expires = iso_z(tunnel.extend(seconds))
        if self._publisher is not None:
            self._publisher.publish_now()
        self._audit.write("extended", tunnel.id, by=seconds, expires_at=expires)
        return {"expires_at": expires}
