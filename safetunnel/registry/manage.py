"""Acting on running tunnels from another process: stop, extend, status.

The CLI commands ``kill``, ``extend`` and ``status`` are thin wrappers around these. A tunnel is
asked over its control socket first; a signal is only a fallback, and only ever sent to a process
whose pid *and* start time match the record, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from safetunnel.errors import SafetunnelError, StateError, TunnelNotFound
from safetunnel.registry import control
from safetunnel.registry.records import Registry, TunnelRecord, process_matches

StopMethod = Literal["control", "sigterm", "stale"]
POLL = 0.05


class StopTimeout(SafetunnelError):
    """The tunnel was asked to stop but is still running."""


@dataclass(frozen=True)
class StopResult:
    id: str
    method: StopMethod  # how it ended: asked over the socket, SIGTERM fallback, or already dead
    detail: str = ""


def signal_if_same(record: TunnelRecord, signum: int = signal.SIGTERM) -> bool:
    """Send ``signum`` to the record's process only if pid and start time still match.

    On Linux a pidfd pins the process while it is checked, closing the window in which the pid
    could be reused between the check and the signal.
    """
    try:
        pidfd = os.pidfd_open(record.pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        if not process_matches(record.pid, record.pid_start_time):
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _wait_gone(registry: Registry, record: TunnelRecord, deadline: float) -> bool:
    """Wait until the process has exited; then make sure its record and socket are gone."""
    while process_matches(record.pid, record.pid_start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    # Give a tunnel in its final teardown a moment to remove its own files before we do; one
    # that crashed never will, and then the leftovers are ours to clean.
    grace = min(deadline, time.monotonic() + 1.0)
    while registry.record_path(record.id).exists() and time.monotonic() < grace:
        time.sleep(POLL)
    _remove_quietly(registry, record.id)
    return True


def stop(registry: Registry, tunnel_id: str, timeout: float = 10.0) -> StopResult:
    """Stop one tunnel and wait for it to exit. Raises TunnelNotFound or StopTimeout."""
    try:
        record = registry.get(tunnel_id)
    except StateError:
        return _stop_unreadable(registry, tunnel_id, timeout)
    deadline = time.monotonic() + timeout
    if not registry.is_live(record):
        registry.prune_lost(record)
        return StopResult(record.id, "stale", "was not running; stale entry removed")
    method: StopMethod = "control"
    detail = ""
    try:
        control.request(registry.socket_path(record.id), "stop", timeout=min(5.0, timeout))
    except (control.ControlUnavailable, control.ControlError) as err:
        method, detail = "sigterm", f"control socket: {err.message}"
        signal_if_same(record)
    # A tunnel that accepted "stop" but hangs in teardown gets the (verified) signal at half time.
    if not _wait_gone(registry, record, min(deadline, time.monotonic() + timeout / 2)):
        if method == "control":
            method, detail = "sigterm", "did not exit after stop; sent SIGTERM"
            signal_if_same(record)
        if not _wait_gone(registry, record, deadline):
            raise StopTimeout(
                f"{record.id} (pid {record.pid}) is still running after {timeout:g}s",
                hint=f"Check the process; `kill -9 {record.pid}` ends it without teardown.",
            )
    return StopResult(record.id, method, detail)


def _stop_unreadable(registry: Registry, tunnel_id: str, timeout: float) -> StopResult:
    """A tunnel whose record cannot be read is still asked over its control socket: the record
    names no pid we could trust, and the socket answers only for the tunnel that made it."""
    path = registry.record_path(tunnel_id)
    if not registry.owner_running(path):
        _remove_quietly(registry, tunnel_id)
        return StopResult(tunnel_id, "stale", "was not running; its unreadable entry was removed")
    sock = registry.socket_path(tunnel_id)
    try:
        control.request(sock, "stop", timeout=min(5.0, timeout))
    except (control.ControlUnavailable, control.ControlError) as err:
        raise StopTimeout(
            f"{tunnel_id} has an unreadable record and its control socket failed: {err.message}"
        ) from None
    deadline = time.monotonic() + timeout
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(POLL)
    if sock.exists() and control.answers(sock):
        raise StopTimeout(f"{tunnel_id} is still running after {timeout:g}s")
    return StopResult(tunnel_id, "control", "its record was unreadable")


def _remove_quietly(registry: Registry, tunnel_id: str) -> None:
    """Remove leftovers if we can: a read-only or full state dir must not turn a stop that
    worked into an error (the files name a process that is gone, and list prunes them later)."""
    with contextlib.suppress(OSError):
        registry.remove(tunnel_id)


def stop_many(
    registry: Registry,
    ids: list[str],
    on_result: Callable[[str, StopResult | SafetunnelError], None],
    timeout: float = 10.0,
    *,
    listed: bool = False,
) -> int:
    """Stop each id in turn, reporting each outcome; returns how many failed. ``listed``: the
    ids were running when listed (``kill --all``), so one that has ended since is no failure."""
    failures = 0
    for tunnel_id in ids:
        try:
            outcome: StopResult | SafetunnelError = stop(registry, tunnel_id, timeout)
        except TunnelNotFound as err:
            if listed:
                outcome = StopResult(tunnel_id, "stale", "had ended by itself")
            else:
                outcome = err
                failures += 1
        except SafetunnelError as err:
            outcome = err
            failures += 1
        on_result(tunnel_id, outcome)
    return failures


def live_record(registry: Registry, tunnel_id: str) -> TunnelRecord:
    """The record of a running tunnel; a stale one is pruned and reported as not found."""
    record = registry.get(tunnel_id)
    if not registry.is_live(record):
        registry.prune_lost(record)
        raise TunnelNotFound(f"tunnel {tunnel_id} is no longer running (stale entry removed)")
    return record


def extend(registry: Registry, tunnel_id: str, seconds: int) -> dict[str, Any]:
    """Ask a running tunnel to move its expiry by ``seconds``; returns its reply."""
    record = live_record(registry, tunnel_id)
    return control.request(registry.socket_path(record.id), "extend", seconds=seconds)


def status(registry: Registry, tunnel_id: str) -> dict[str, Any]:
    """The record merged with the tunnel's live status; ``live`` says whether it answered."""
    record = live_record(registry, tunnel_id)
    result = record.to_dict()
    try:
        reply = control.request(registry.socket_path(record.id), "status", timeout=3.0)
    except (control.ControlUnavailable, control.ControlError) as err:
        result["live"] = False
        result["live_error"] = err.message
        return result
    reply.pop("ok", None)
    result.update(reply)
    result["live"] = True
    result["id"] = record.id  # the tunnel cannot rename itself through a status reply
    return result
