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

from safetunnel import timefmt
from safetunnel.errors import SafetunnelError
from safetunnel.registry import records as reg
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.control import ControlServer

HERE = Path(__file__).resolve()


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start the fake tunnel; return the process and its id once it says it is up."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE), *args], stdout=subprocess.PIPE, text=True, env=env
    )
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


class FakeTunnel:
    """What a Tunnel does for the registry, without any SSH: record, control socket, audit."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.registry = reg.Registry()
        self.audit = AuditLog()
        self.started = timefmt.utc_now()
        self.expires = self.started + timedelta(seconds=ns.ttl)
        self.reason = "ttl"
        self.done = threading.Event()
        self.lock = threading.Lock()  # the record is touched by the control thread and main
        self.record = reg.TunnelRecord(
            id=ns.id or reg.new_tunnel_id(),
            pid=os.getpid(),
            pid_start_time=reg.current_process_start_time(),
            local="127.0.0.1:62893",
            ssh_host="alice@bastion:22",
            remote_bind="localhost",
            remote_port=40123,
            protocol="auto",
            started_at=timefmt.iso_z(self.started),
            expires_at=timefmt.iso_z(self.expires),
            token_hash_prefix="0badc0de",
        )

    def finish(self, reason: str) -> None:
        self.reason = reason
        self.done.set()

    def status(self, _: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            rec = self.record
            return {
                "expires_at": rec.expires_at,
                "connections": rec.connections,
                "total_connections": rec.total_connections,
                "recent": list(rec.recent),
            }

    def stop(self, _: dict[str, Any]) -> dict[str, Any]:
        if not self.ns.ignore_stop:
            self.finish("killed")  # only ask: the main thread tears down, not the handler
        return {}

    def extend(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise SafetunnelError("extend needs a positive whole number of seconds")
        new = self.expires + timedelta(seconds=seconds)
        if new - self.started > timedelta(seconds=self.ns.max_ttl):
            raise SafetunnelError(f"refused: that would exceed max_ttl ({self.ns.max_ttl}s)")
        with self.lock:
            self.expires = new
            self.record.expires_at = timefmt.iso_z(new)
            self.registry.write(self.record)  # list/status must see it at once
        self.audit.write("extended", self.record.id, by=seconds, expires_at=timefmt.iso_z(new))
        return {"expires_at": timefmt.iso_z(new)}

    def tick(self) -> None:
        """Pretend a connection happened, and refresh the record as a real tunnel does."""
        with self.lock:
            self.record.total_connections += 1
            self.record.add_recent(
                {
                    "origin": "127.0.0.1:5000",
                    "protocol": "http",
                    "allowed": True,
                    "reason": "token",
                    "bytes_in": 10,
                    "bytes_out": 20,
                    "duration": 0.1,
                }
            )
            self.registry.write(self.record)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.finish("signal"))
        server = ControlServer(
            self.registry.socket_path(self.record.id),
            {"status": self.status, "stop": self.stop, "extend": self.extend},
        )
        if not self.ns.no_control:
            server.start()
        self.registry.write(self.record)
        self.audit.write("started", self.record.id, local=self.record.local)
        print("ready", self.record.id, flush=True)
        while not self.done.wait(0.25):
            if timefmt.utc_now() >= self.expires:
                self.finish("ttl")
            self.tick()
        server.close()
        self.registry.remove(self.record.id)
        self.audit.write("stopped", self.record.id, reason=self.reason)
        return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id")
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--max-ttl", type=int, default=3600)
    parser.add_argument("--no-control", action="store_true", help="no socket: SIGTERM fallback")
    parser.add_argument("--ignore-stop", action="store_true", help="accept stop but keep running")
    return FakeTunnel(parser.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
