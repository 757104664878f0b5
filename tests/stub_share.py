"""A real running share without SSH: a real :class:`Tunnel` over a stub engine session, published
with the real :class:`Bookkeeper`, so the registry commands (list, status, kill, extend, log) talk
to the real record, control socket and handlers.

Run as a script it starts one such share in its own process (``kill`` signals the pid in the
record, so the share cannot live in the test process) and prints ``ready <id>`` once its record
and control socket exist. Imported, it offers :func:`start` and :func:`stop_quietly`.

Everything that depends on the Tunnel's lifecycle API (how the bookkeeper is attached and
started) is in :func:`serve`, so a change of that API is adapted in one place.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from safetunnel import tokens
from safetunnel.registry import records as reg
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.publication import Bookkeeper
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.sharing.tunnelconfig import TunnelConfig
from safetunnel.ssh.engine import Forward, HostKeyState, Listener, StreamHandler

HERE = Path(__file__).resolve()
LOCAL = ("127.0.0.1", 62893)
SSH_HOST = "alice@bastion:22"
REMOTE_PORT = 40123


class StubSession:
    """The smallest :class:`EngineSession`: a forward always succeeds and no stream arrives."""

    host_key_state: HostKeyState = "pinned"
    fingerprint = "SHA256:stub"
    key_type = "ssh-ed25519"

    def __init__(self) -> None:
        self.active = True

    def forward(
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Listener:
        return Forward(bind, port or REMOTE_PORT, lambda: None)

    def start_watchdog(self, interval: float, on_lost: Callable[[], None]) -> None:
        """The stub connection is never lost."""

    def is_active(self) -> bool:
        return self.active

    def close(self) -> None:
        self.active = False


class StubbornTunnel(Tunnel):
    """Accepts a ``stop`` over the control socket but keeps running: ``kill`` must escalate."""

    def request_stop(self, reason: StopReason | str) -> None:
        if reason != "killed":
            super().request_stop(reason)


def serve(ns: argparse.Namespace) -> int:
    """Start the share, say ``ready <id>``, serve until stopped; the tunnel's exit code."""
    config = TunnelConfig(
        local=LOCAL,
        ttl=ns.ttl,
        ssh_host=SSH_HOST,
        tunnel_id=reg.new_tunnel_id(),
        max_ttl=ns.max_ttl,
    )
    kind = StubbornTunnel if ns.ignore_stop else Tunnel
    books = Bookkeeper(reg.Registry(), AuditLog())
    tunnel = kind(StubSession(), config, tokens.generate(), observers=[books])
    signal.signal(signal.SIGTERM, lambda *_: tunnel.request_stop(StopReason.SIGNAL))
    tunnel.start()
    if ns.no_control:  # as if the socket had been removed: kill must fall back to SIGTERM
        reg.Registry().socket_path(tunnel.id).unlink()
    print("ready", tunnel.id, flush=True)
    tunnel.wait()
    return tunnel.exit_code


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a stub share; return its process and tunnel id once it is published."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env if env is not None else dict(os.environ),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready", f"stub share did not start: {line}"
    return proc, line[1]


def stop_quietly(proc: subprocess.Popen[str]) -> None:
    """Test teardown: end a stub share this test started, if it is still there."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttl", type=int, default=30)
    parser.add_argument("--max-ttl", type=int, default=3600)
    parser.add_argument("--no-control", action="store_true", help="no socket: SIGTERM fallback")
    parser.add_argument("--ignore-stop", action="store_true", help="accept stop, keep running")
    return serve(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
