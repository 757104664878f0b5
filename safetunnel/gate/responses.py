"""What goes back to the remote client: the gate's own fixed replies, and how pieces are
written."""

from __future__ import annotations

import h11


def _reply(status: bytes, extra: bytes, text: bytes) -> bytes:
    # Fixed bodies: a refusal never echoes anything the client sent.
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + extra
        + b"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"
        + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(text)
        + text
    )


UNAUTHORIZED = _reply(
    b"401 Unauthorized", b'WWW-Authenticate: Bearer realm="safetunnel"\r\n', b"Access denied.\n"
)
BAD_REQUEST = _reply(b"400 Bad Request", b"", b"Bad request.\n")
# The one answer for "the token was right but the service did not answer": whether it could not
# be connected at all or closed before its response, the client learns the same thing.
BAD_GATEWAY = _reply(b"502 Bad Gateway", b"", b"The shared service did not answer.\n")
# After the share's expiry: 503, not 401, because the token may well be right (a 401 would send a
# browser or script looking for another one), and not a refusal either: the share is simply over.
SHARE_ENDED = _reply(b"503 Service Unavailable", b"", b"This share has ended.\n")

# Both sides of a request/response cycle are over once h11 is in one of these states.
ENDED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
# Below this a join costs less than handing the pump one more write; above it, a chunk of body
# is passed on as the very object h11 produced, without a copy.
_COALESCE_LIMIT = 16384


def coalesce(pieces: list[bytes] | None) -> list[bytes]:
    """h11's output pieces as few writes as is cheap (``None``, h11's "nothing", is none)."""
    if pieces is None:
        return []
    if len(pieces) <= 1 or sum(len(piece) for piece in pieces) > _COALESCE_LIMIT:
        return pieces
    return [b"".join(pieces)]
