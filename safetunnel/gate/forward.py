"""The request as the service receives it: the client's own HTTP version, carriers removed.

h11 parsed and checked the request on the client's side; here it is written out again for the
service, the carriers gone. Writing it needs no second h11 connection: a head is its request line
and headers (``Host`` first, as h11 writes it), and a body keeps its framing: a chunked body is
re-chunked piece by piece (its trailers dropped: they could carry anything, the token included),
a Content-Length body passes as it is.
"""

from __future__ import annotations

import h11

from safetunnel.gate.auth import HeaderList


def request_head(request: h11.Request, headers: HeaderList) -> bytes:
    """The bytes of ``request`` with ``headers`` for the service; h11.LocalProtocolError when
    they are not a valid request any more (then nothing is sent)."""
    checked = h11.Request(
        method=request.method,
        target=request.target,
        headers=headers,
        http_version=request.http_version,
    )
    ordered = checked.headers.raw_items()
    if request.http_version == b"1.1":
        ordered = [item for item in ordered if item[0].lower() == b"host"] + [
            item for item in ordered if item[0].lower() != b"host"
        ]
    lines = [request.method + b" " + request.target + b" HTTP/" + request.http_version]
    lines += [name + b": " + value for name, value in ordered]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def body_pieces(event: h11.Event, chunked: bool) -> list[bytes]:
    """What one body event of the request becomes toward the service."""
    if type(event) is h11.Data:
        data = bytes(event.data)
        if not data:
            return []  # an empty chunk would read as the end of the body
        return [b"%x\r\n" % len(data), data, b"\r\n"] if chunked else [data]
    if type(event) is h11.EndOfMessage:
        return [b"0\r\n\r\n"] if chunked else []
    return []
