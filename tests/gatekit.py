"""Test helpers for the gate: run a Gate over a script of inputs and collect what it decided."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from safetunnel import tokens
from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, Event, NeedData, Pipe, ToRemote, ToService
from safetunnel.gate.policy import GatePolicy, session_secret

TOKEN = "st_" + "Q" * 20 + "x-_" + "7" * 20
TUNNEL_ID = "st-1a2b3c"
COOKIE = "safetunnel_" + TUNNEL_ID
assert tokens.looks_like_token(TOKEN)

# One step of a script: ("remote", bytes), ("service", bytes), ("time", now) or
# ("expires", expires_at): the tunnel's expiry moved (extend).
Step = tuple[str, bytes | float]


# This tunnel's policy, as the tunnel makes it (once): with a session salt for link cookies.
BASE_POLICY = GatePolicy.for_token(TOKEN, TUNNEL_ID)
# The value of this tunnel's link cookie, as a browser sends it back after the link's 303.
SESSION = session_secret(TOKEN.encode(), BASE_POLICY.session_salt).decode()


def make_policy(**overrides: object) -> GatePolicy:
    return dataclasses.replace(BASE_POLICY, **overrides)  # type: ignore[arg-type]


@dataclass
class Run:
    gate: Gate
    events: list[Event] = field(default_factory=list)

    @property
    def service(self) -> bytes:
        return b"".join(bytes(e.data) for e in self.events if isinstance(e, ToService))

    @property
    def remote(self) -> bytes:
        return b"".join(bytes(e.data) for e in self.events if isinstance(e, ToRemote))

    @property
    def decisions(self) -> list[str]:
        """Event kinds with consecutive data events merged, so chunking does not matter."""
        kinds: list[str] = []
        for event in self.events:
            kind = type(event).__name__
            if isinstance(event, NeedData) or (kinds and kinds[-1] == kind and "To" in kind):
                continue
            kinds.append(kind)
        return kinds

    @property
    def final(self) -> Event | None:
        ends = [e for e in self.events if isinstance(e, (Close, Pipe))]
        return ends[-1] if ends else None

    @property
    def close(self) -> Close:
        assert isinstance(self.final, Close), self.events
        return self.final

    @property
    def connects(self) -> int:
        return sum(isinstance(e, Connect) for e in self.events)


def drain(gate: Gate, now: float, into: list[Event], expires_at: float = math.inf) -> None:
    """Call next_event until the gate waits or is done."""
    for _ in range(100_000):
        event = gate.next_event(now, expires_at)
        into.append(event)
        if isinstance(event, (NeedData, Pipe, Close)):
            return
    raise AssertionError("gate never settled")


def run(
    script: Iterable[Step],
    policy: GatePolicy | None = None,
    start: float = 0.0,
    expires_at: float = math.inf,
) -> Run:
    """Feed each step, draining events after each; stops feeding once the gate is finished."""
    result = Run(Gate(policy or make_policy(), start))
    now = start
    drain(result.gate, now, result.events, expires_at)
    for side, value in script:
        if isinstance(result.events[-1], (Close, Pipe)):
            break
        if side == "time":
            assert isinstance(value, float | int)
            now = float(value)
        elif side == "expires":
            assert isinstance(value, float | int)
            expires_at = float(value)
        elif side == "remote":
            assert isinstance(value, bytes)
            result.gate.receive_remote(value)
        else:
            assert isinstance(value, bytes)
            result.gate.receive_service(value)
        drain(result.gate, now, result.events, expires_at)
    return result


def chunked(script: Sequence[Step], size: int) -> list[Step]:
    """The same script with every byte string split into pieces of ``size`` bytes."""
    out: list[Step] = []
    for side, value in script:
        if isinstance(value, bytes) and len(value) > size:
            out.extend((side, value[i : i + size]) for i in range(0, len(value), size))
        else:
            out.append((side, value))
    return out


def request(
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    method: str = "GET",
    version: str = "1.1",
) -> bytes:
    """A well-formed request; Host is added unless given."""
    lines = [f"{method} {target} HTTP/{version}"]
    if not any(name.lower() == "host" for name, _ in headers):
        lines.append("Host: localhost")
    lines += [f"{name}: {value}" for name, value in headers]
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def authed(target: str = "/", headers: Sequence[tuple[str, str]] = (), **kw: object) -> bytes:
    return request(target, [("X-Safetunnel-Token", TOKEN), *headers], **kw)  # type: ignore[arg-type]


def set_cookie(result: Run) -> str:
    """The Set-Cookie header value of a link's 303 reply."""
    for line in result.remote.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no Set-Cookie in {result.remote!r}")


def cookie_pair(result: Run) -> str:
    """``name=value`` of the link's cookie, as a browser sends it back."""
    return set_cookie(result).split(";", 1)[0]


def response(body: bytes = b"hello", status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


__all__ = [
    "COOKIE",
    "SESSION",
    "TOKEN",
    "Run",
    "authed",
    "chunked",
    "cookie_pair",
    "drain",
    "make_policy",
    "request",
    "response",
    "run",
    "set_cookie",
]
