"""The request as the service receives it: the client's own HTTP version, carriers removed.

h11 parsed and checked the request on the client's side; here it is written out again for the
service, the carriers gone. Writing it needs no second h11 connection: a head is its request line
and headers (``Host`` first, as h11 writes it), and a body keeps its framing: a chunked body is
re-chunked piece by piece (its trailers dropped: they could carry anything, the token included),
a Content-Length body passes as it is.
"""

from __future__ import annotations

import re

import h11

from safetunnel.gate.auth import HeaderList

# The very patterns h11 validates every header of an h11.Request with: checking the rewritten
# headers with them refuses exactly what building a second h11.Request would. They are h11's
# private names: should a release move them, every head takes h11's own path (slower, as safe).
_FIELD_NAME: re.Pattern[bytes] | None
_FIELD_VALUE: re.Pattern[bytes] | None
try:
    from h11._headers import _field_name_re as _FIELD_NAME
    from h11._headers import _field_value_re as _FIELD_VALUE
except ImportError:  # pragma: no cover - only with an h11 that reorganised its internals
    _FIELD_NAME = _FIELD_VALUE = None

# Headers h11 normalizes (merges, lower-cases) as well as validates: a request with one of them
# takes h11's own path, so its bytes stay what h11 would write.
_NORMALIZED = (b"content-length", b"transfer-encoding")


def request_head(request: h11.Request, headers: HeaderList) -> bytes:
    """The bytes of ``request`` with ``headers`` for the service; h11.LocalProtocolError when
    they are not a valid request any more (then nothing is sent).

    The same checks as an h11.Request built from them, without building one: every name and
    value against h11's patterns (no CR, LF or NUL can pass), one Host at most and one in
    HTTP/1.1. Method and target are the request's own, which h11 validated when it made it.
    """
    field_name, field_value = _FIELD_NAME, _FIELD_VALUE
    if field_name is None or field_value is None:
        return _via_h11(request, headers)
    hosts: HeaderList = []
    others: HeaderList = []
    for item in headers:
        name, value = item
        if field_name.fullmatch(name) is None or field_value.fullmatch(value) is None:
            raise h11.LocalProtocolError("illegal header")
        lower = name.lower()
        if lower in _NORMALIZED:
            return _via_h11(request, headers)
        (hosts if lower == b"host" else others).append(item)
    if len(hosts) > 1 or (not hosts and request.http_version == b"1.1"):
        raise h11.LocalProtocolError("one Host header is required")
    return _written(request, hosts + others if request.http_version == b"1.1" else headers)


def _via_h11(request: h11.Request, headers: HeaderList) -> bytes:
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
    return _written(request, ordered)


def _written(request: h11.Request, ordered: HeaderList) -> bytes:
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
