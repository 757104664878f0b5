"""A stand-in for a running share, for registry/control tests before the real Tunnel exists.

Run as a script it does what a Tunnel must do for the registry: write its record (and refresh it),
serve status/stop/extend on its control socket, write audit lines, and on stop/SIGTERM/expiry
close the socket, remove the record and exit 0. Imported, it offers helpers to start one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start the fake tunnel; return the process and its id once it says it is up."""
    proc = subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready", f"fake tunnel did not start: {line}"
    return proc, line[1]


def stop_quietly(proc: subprocess.Popen[str]) -> None:
    """Test teardown: end a fake tunnel this test started, if it is still there."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _serve(ns: argparse.Namespace) -> int:
    from safetunnel import registry as reg
    from safetunnel import timefmt
    from safetunnel.audit import AuditLog
    from safetunnel.control import ControlServer
    from safetunnel.errors import SafetunnelError

    registry = reg.Registry()
    audit = AuditLog()
    started = timefmt.utc_now()
    state: dict[str, Any] = {"expires": started + timedelta(seconds=ns.ttl), "reason": "ttl"}
    done = threading.Event()
    lock = threading.Lock()
    record = reg.TunnelRecord(
        id=ns.id or reg.new_tunnel_id(), pid=os.getpid(),
        pid_start_time=reg.current_process_start_time(), local="127.0.0.1:62893",
        ssh_host="alice@bastion:22", remote_bind="localhost", remote_port=40123,
        protocol="auto", started_at=timefmt.iso_z(started),
        expires_at=timefmt.iso_z(state["expires"]), token_hash_prefix="0badc0de",
    )

    def finish(reason: str) -> None:
        state["reason"] = reason
        done.set()

    def status(_: dict[str, Any]) -> dict[str, Any]:
        with lock:
            return {"expires_at": record.expires_at, "connections": record.connections,
                    "total_connections": record.total_connections, "recent": record.recent}

    def stop(_: dict[str, Any]) -> dict[str, Any]:
        if not ns.ignore_stop:
            finish("killed")
        return {}

    def extend(args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if not isinstance(seconds, int) or seconds <= 0:
            raise SafetunnelError("extend needs a positive whole number of seconds")
        new = state["expires"] + timedelta(seconds=seconds)
        if new - started > timedelta(seconds=ns.max_ttl):
            raise SafetunnelError(f"refused: that would exceed max_ttl ({ns.max_ttl}s from start)")
        with lock:
            state["expires"] = new
            record.expires_at = timefmt.iso_z(new)
            registry.write(record)
        audit.write("extended", record.id, by=seconds, expires_at=record.expires_at)
        return {"expires_at": record.expires_at}

    signal.signal(signal.SIGTERM, lambda *_: finish("signal"))
    server = ControlServer(registry.socket_path(record.id),
                           {"status": status, "stop": stop, "extend": extend})
    if not ns.no_control:
        server.start()
    registry.write(record)
    audit.write("started", record.id, local=record.local, token_hash_prefix="0badc0de")
    print("ready", record.id, flush=True)
    while not done.wait(0.25):
        if timefmt.utc_now() >= state["expires"]:
            finish("ttl")
        with lock:  # the counters a real tunnel refreshes every few seconds
            record.total_connections += 1
            record.add_recent({"origin": "127.0.0.1:5000", "protocol": "http", "allowed": True,
                               "reason": "token", "bytes_in": 10, "bytes_out": 20,
                               "duration": 0.1})
            registry.write(record)
    server.close()
    registry.remove(record.id)
    audit.write("stopped", record.id, reason=state["reason"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id")
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--max-ttl", type=int, default=3600)
    parser.add_argument("--no-control", action="store_true", help="no socket: SIGTERM fallback")
    parser.add_argument("--ignore-stop", action="store_true", help="accept stop but keep running")
    return _serve(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
