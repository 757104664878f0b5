"""Does the server honour the listen address of a remote forward? Asked before a public one.

OpenSSH's sshd with ``GatewayPorts no`` (its default) binds every remote forward on loopback,
whatever address the client asked for, and says nothing: the reply to ``0.0.0.0`` is a plain
success. So before a public forward each engine asks for one on ``PROBE_BIND``, an address kept
for documentation that no real interface has. A server that honours listen addresses cannot bind
it and refuses; one that binds it anyway has replaced the address with its own (loopback, or the
wildcard with its "overridden by server GatewayPorts" message). The probe is cancelled at once,
and a loopback-only server ends the share with :class:`ForwardNarrowed` rather than a claim that
it listens on all interfaces.
"""

from __future__ import annotations

from safetunnel.errors import ForwardNarrowed

PROBE_BIND = "192.0.2.1"  # TEST-NET-1: documentation only, never assigned to an interface
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def needs_probe(bind: str) -> bool:
    """A bind beyond loopback is only worth asking for if the server will honour it."""
    return bind not in _LOOPBACK


def narrowed(display: str) -> ForwardNarrowed:
    """The refusal for a server that binds remote forwards on its loopback only."""
    return ForwardNarrowed(
        f"{display} listens on its loopback only for remote forwards, so --public (all "
        "interfaces) cannot be honoured: sshd's GatewayPorts is `no` there. Nothing was shared.",
        hint="Ask the host's admin for `GatewayPorts clientspecified` (or `yes`) in "
        "sshd_config, or share without --public (reachable from that host, or through ssh -L).",
    )
