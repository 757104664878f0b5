"""Publishes one running tunnel: its record, its control socket and its audit lines.

The tunnel itself knows nothing about files. This object is one of its observers, given first so
that it is closed last: ``kill`` sees the record vanish only when everything else is down. It
needs only the small :class:`Published` surface of a tunnel, so the registry layer does not
import the sharing layer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from safetunnel.errors import SafetunnelError, UsageError
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.control import ControlServer
from safetunnel.registry.publish import RecordPublisher
from safetunnel.registry.records import Registry, TunnelRecord, current_process_start_time
from safetunnel.timefmt import iso_z

log = logging.getLogger("safetunnel.registry")
_RECORD_FIELDS = set(TunnelRecord.__dataclass_fields__) - {"pid_start_time", "log_path"}
# Event kind -> audit entry kind. Connection decisions are not audited on their own: the
# connection's end carries the decision together with its bytes and duration.
_AUDITED = {
    "started": "started",
    "warning": "warning",
    "reconnecting": "reconnecting",
    "reconnected": "reconnected",
    "stopped": "stopped",
    "connection-closed": "connection",
    "request": "request",
}
_STATE_CHANGES = {"reconnecting", "reconnected"}
_UNRECORDED = "the audit log {path} cannot be written, so nothing was changed; the share stops"
# The token (also inside the link and the ticket) must never reach the audit file; the id is the
# entry's own field.
_NOT_AUDITED = frozenset({"event", "id", "token", "url", "ticket"})


class Published(Protocol):
    """What the publication uses of a tunnel."""

    @property
    def id(self) -> str: ...
    def status(self) -> dict[str, Any]: ...
    def request_stop(self, reason: str) -> None: ...
    def extend(self, seconds: int) -> datetime: ...
    def add_admission_check(self, check: Callable[[], bool]) -> None: ...
    def mint_recipient(self, name: str) -> dict[str, Any]: ...
    def revoke_recipient(self, name: str) -> dict[str, Any]: ...


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
        self._audit_broken = False
        self._broken_lock = threading.Lock()
        self._unwritten: list[dict[str, Any]] = []  # audit lines that wait for flush()
        self._checked = False  # the audit file was found writable since the last flush()

    def started(self, tunnel: Published) -> None:
        """Listen on the control socket and publish the record; both errors abort the share."""
        self._tunnel = tunnel
        control = ControlServer(
            self._registry.socket_path(tunnel.id),
            {
                "status": self._status,
                "stop": self._stop,
                "extend": self._extend,
                "ticket": self._ticket,
                "revoke": self._revoke,
            },
        )
        control.start()
        self._control = control
        publisher = RecordPublisher(self._registry, self.snapshot)
        publisher.start()
        self._publisher = publisher
        tunnel.add_admission_check(self._audit_ready)

    def event(self, event: AuditedEvent) -> None:
        kind = _AUDITED.get(event.kind)
        if kind is None:
            return
        if kind in _STATE_CHANGES and self._publisher is not None:
            # `list` shows the state at once, not up to 2 s late; a failed write is retried
            # by the publisher's next tick.
            with contextlib.suppress(SafetunnelError, OSError):
                self._publisher.publish_now()
        data = event.to_json()
        self._unwritten.append(self._audit.entry_of(kind, str(data["id"]), data, _NOT_AUDITED))

    def flush(self) -> None:
        """Append the lines of the events delivered since the last flush, with one write; the
        tunnel flushes after every delivery (a busy share delivers several events at once)."""
        entries, self._unwritten = self._unwritten, []
        self._checked = False  # the next batch's connections are checked anew
        if not entries:
            return
        try:
            self._audit.append(entries)
        except (OSError, SafetunnelError) as err:
            self._audit_failed(err)

    def _audit_ready(self) -> bool:
        """Fail closed: a connection we could not record never reaches the service. The file is
        checked once per batch of reports (their lines are appended together at the next flush,
        at most a few milliseconds later), so the connections of one batch share one check."""
        if self._audit_broken:
            return False
        if self._checked:
            return True
        try:
            self._audit.check_writable()
        except OSError as err:
            self._audit_failed(err)
            return False
        self._checked = True
        return True

    def _audit_failed(self, err: OSError | SafetunnelError) -> None:
        """Stop the share, once, saying why in one line (no traceback: the cause is the disk)."""
        with self._broken_lock:  # the loop and the control thread may both find it
            if self._audit_broken:
                return
            self._audit_broken = True
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        log.error(
            "the audit log %s cannot be written (%s); the share refuses connections and stops",
            self._audit.path,
            why,
        )
        if self._tunnel is not None:
            self._tunnel.request_stop("audit-failed")

    def close(self) -> None:
        """Close the socket, then remove the record. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.flush()
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
        self._require_audit()
        expires = iso_z(tunnel.extend(seconds))
        self._record("extended", tunnel.id, by=seconds, expires_at=expires)
        if self._publisher is not None:
            with contextlib.suppress(SafetunnelError, OSError):  # the next tick retries
                self._publisher.publish_now()
        return {"expires_at": expires}

    def _ticket(self, args: dict[str, Any]) -> dict[str, Any]:
        """Mint a recipient's token; its ticket goes back over this socket only, never to the
        audit line, which names the recipient alone."""
        tunnel = self._live()
        self._require_audit()
        reply = tunnel.mint_recipient(_name(args))
        self._record("recipient", tunnel.id, name=reply["name"], action="added")
        return reply

    def _revoke(self, args: dict[str, Any]) -> dict[str, Any]:
        tunnel = self._live()
        self._require_audit()
        reply = tunnel.revoke_recipient(_name(args))
        self._record("recipient", tunnel.id, name=reply["name"], action="revoked")
        return reply

    def _require_audit(self) -> None:
        """A change that could not be recorded is not made, as a connection that could not be
        recorded is refused; and the share stops, as it does then."""
        if not self._audit_ready():
            raise SafetunnelError(_UNRECORDED.format(path=self._audit.path))

    def _record(self, event: str, tunnel_id: str, **fields: Any) -> None:
        """The audit line of a change just made. The file was writable a moment ago; if the
        line fails all the same, the share stops, and the change with it."""
        try:
            self._audit.write(event, tunnel_id, **fields)
        except (OSError, SafetunnelError) as err:
            self._audit_failed(err)
            raise SafetunnelError(
                f"the audit log {self._audit.path} cannot be written; the share stops"
            ) from err


def _name(args: dict[str, Any]) -> str:
    name = args.get("name")
    if not isinstance(name, str):
        raise UsageError("a recipient name is needed")
    return name
