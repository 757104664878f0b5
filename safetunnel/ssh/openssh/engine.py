"""The OpenSSH engine's session: a control master carrying one remote forward to the gate socket.

OpenSSH's own client does the crypto, the channel multiplexing, the host-key check and the
keepalives; this process keeps only what it alone can do, the token gate, behind a unix socket.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConfigError, ForwardRefused, ForwardWidened, HostKeyChanged, SSHError
from safetunnel.ssh.engine import Forward, HostKeyState, StreamHandler
from safetunnel.ssh.narrowing import PROBE_BIND, narrowed, needs_probe
from safetunnel.ssh.openssh.forward import GateSocket, socket_name
from safetunnel.ssh.openssh.master import Master
from safetunnel.ssh.openssh.masterlog import SERVER_KEY
from safetunnel.ssh.target import SSHTarget

log = logging.getLogger("safetunnel.ssh.openssh")

# The server's SSH_MSG_DEBUG when GatewayPorts=yes replaced the requested listen address with
# the wildcard; the master logs it as "Remote: ..." at DEBUG1.
GATEWAYPORTS_OVERRIDE = "overridden by server GatewayPorts"
# The master logs this once it has the server's answer to a forward, before it tells the
# control client: seeing it means every debug message about that forward has been read.
FORWARD_ANSWERED = "mux_confirm_remote_forward"
ANSWER_WAIT = 5.0  # how long the line may take to be read


class OpenSSHSession:
    """An authenticated ``ssh`` control master, as an EngineSession. A context manager."""

    engine = "openssh"

    def __init__(
        self, master: Master, target: SSHTarget, state: HostKeyState, sockets: Path
    ) -> None:
        self._master = master
        self.target = target
        self.host_key_state: HostKeyState = state
        self.key_type, self.fingerprint = _accepted_key(master)
        self._sockets = sockets
        self._gate: GateSocket | None = None
        self._listener: Forward | None = None
        self._lost = False
        self._close_lock = threading.Lock()
        self._closed = False

    def check_key(self, fingerprint: str) -> None:
        """HostKeyChanged when the master accepted another key than the one checked first."""
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise HostKeyChanged(
                f"{self.target.display} showed {fingerprint} when checked and "
                f"{self.fingerprint} to the connection. Someone may be intercepting it.",
                hint="safetunnel will not connect; try again, and ask the host's administrator.",
            )
        self.fingerprint = self.fingerprint or fingerprint

    def forward(
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Forward:
        """Ask the server (through the master) to listen on ``bind:port`` and connect each
        client to the gate socket. ForwardRefused (exit 6) when refused, widened, or a bind
        beyond loopback would be narrowed to loopback."""
        if not bind:
            raise ConfigError(
                'Refusing to request bind address "": servers read it as every interface.',
                hint='Use "127.0.0.1", or "0.0.0.0" with --public.',
            )
        if self._listener is not None:
            raise SSHError("This session already carries a forward; open one session per tunnel.")
        if needs_probe(bind) and self._narrows():
            raise narrowed(self.target.display)
        path = socket_name(self._sockets, "g")
        self._gate = GateSocket(path, on_stream, (bind, 0))
        spec = f"{format_hostport(bind, port)}:{path}"
        seen = self._master.log.seen
        answer = self._master.control("forward", "-R", spec)
        if answer.returncode != 0:
            self._drop_gate()
            raise ForwardRefused(
                f"{self.target.display} refused to listen on {format_hostport(bind, port)}"
                f" (ssh said: {answer.stderr.strip() or 'nothing'}).",
                hint="The port may be taken or not permitted (AllowTcpForwarding, permitlisten);"
                " try --remote-port 0.",
            )
        actual = int(answer.stdout.strip()) if port == 0 else port
        self._listener = Forward(bind, actual, self._cancel_forward, spec)
        self._refuse_if_widened(seen, bind, actual, allow_wildcard)
        self._master.settle()
        return self._listener

    def _narrows(self) -> bool:
        """True when the server bound a forward on an address it cannot have without saying it
        widened it: it puts remote forwards on its loopback (see safetunnel.ssh.narrowing).
        Nothing listens on the probe's socket path: nobody can connect to it anyway."""
        spec = f"{PROBE_BIND}:0:{socket_name(self._sockets, 'p')}"
        seen = self._master.log.seen
        if self._master.control("forward", "-R", spec).returncode != 0:
            return False  # it honours listen addresses; the real request decides
        self._master.log.wait_for(FORWARD_ANSWERED, seen, timeout=5.0)
        widened = any(GATEWAYPORTS_OVERRIDE in line for line in self._master.log.since(seen))
        answer = self._master.control("cancel", "-R", spec, timeout=3.0)
        if answer.returncode != 0:
            log.warning("could not cancel the probe forward: %s", answer.stderr.strip())
        return not widened

    def _refuse_if_widened(self, seen: int, bind: str, port: int, allow_wildcard: bool) -> None:
        answered = self._master.log.wait_for(FORWARD_ANSWERED, seen, timeout=ANSWER_WAIT)
        if allow_wildcard:
            return
        if not answered:
            # ssh logs the server's answer before it tells us the port; without that line
            # nobody can say whether the server widened the bind: fail closed.
            self._cancel_forward()
            raise ForwardRefused(
                f"could not confirm where {self.target.display} bound port {port} (ssh's log"
                " did not show the server's answer in time). The forward was cancelled.",
                hint="Try again; if it keeps happening, run with -v and report it.",
            )
        widened = [line for line in self._master.log.since(seen) if GATEWAYPORTS_OVERRIDE in line]
        if widened:
            self._cancel_forward()
            raise ForwardWidened(
                f"{self.target.display} bound port {port} on ALL interfaces instead of {bind}"
                f" (server said: {widened[0].split('Remote: ', 1)[-1]})."
                " The forward was cancelled.",
                hint="Pass --public if you really mean to expose it, or ask the admin for"
                " `GatewayPorts clientspecified`.",
            )

    def _cancel_forward(self) -> None:
        """Stop the server listening; open connections stay. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None and self._master.alive():
            answer = self._master.control("cancel", "-R", listener.spec, timeout=3.0)
            if answer.returncode != 0:
                log.warning("could not cancel the forward: %s", answer.stderr.strip())
        self._drop_gate()

    def _drop_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.close()

    def start_watchdog(self, interval: float, on_lost: Callable[[], None]) -> None:
        """OpenSSH sends the keepalives (ServerAliveInterval, set when the master started) and
        exits when about three go unanswered; its exit is the loss."""

        def lost() -> None:
            self._lost = True
            on_lost()

        self._master.on_exit(lost)

    def is_active(self) -> bool:
        return not self._lost and self._master.alive()

    def close(self) -> None:
        """Cancel the forward, stop the master, remove the sockets. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._cancel_forward()
        self._master.close()
        remove_temporary(self._sockets)

    def __enter__(self) -> OpenSSHSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_temporary(sockets: Path) -> None:
    """Remove a socket directory made only for this session (not the state dir's ``ssh/``)."""
    if sockets.name.startswith("safetunnel-"):
        shutil.rmtree(sockets, ignore_errors=True)


def _accepted_key(master: Master) -> tuple[str, str]:
    """(key type, fingerprint) of the host key the master accepted, from its DEBUG1 log."""
    for line in master.log.host_keys():
        match = SERVER_KEY.search(line)
        if match:
            return match.group(1), match.group(2)
    return "", ""
