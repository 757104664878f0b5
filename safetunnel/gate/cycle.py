"""One request/response cycle on a gated HTTP connection: the framer for the service's answer,
and where the request side stands."""

from __future__ import annotations

import h11

from safetunnel.gate.framing import ResponseFramer
from safetunnel.gate.reader import Framing
from safetunnel.gate.responses import ENDED

# The request side's states that request_state passes on as they are (built once, not per call).
_AS_IS = (h11.IDLE, h11.SEND_BODY, h11.ERROR, h11.SWITCHED_PROTOCOL, *ENDED)


def response_framer(request: h11.Request, framing: Framing) -> ResponseFramer:
    """The framer for the answer to ``request`` (whose headers ``framing`` read): it knows the
    method, whether a switch of protocols was offered, and whether the client ends the
    connection after this cycle."""
    connection = b",".join(framing.connection).lower()
    return ResponseFramer(
        bytes(request.method),
        upgrade=framing.upgrade,
        close=request.http_version != b"1.1" or b"close" in _tokens(connection),
    )


def request_state(server: h11.Connection) -> object:
    """The request side's state, where a request that offered an upgrade (or a CONNECT) is
    DONE: its response was not a switch, or the gate would be piping by now. (h11 calls that
    state MIGHT_SWITCH_PROTOCOL but does not export it.)"""
    state = server.their_state
    return state if state in _AS_IS else h11.DONE


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip() for token in value.split(b",")]
