"""The request head as the service receives it: the client's own HTTP version, carriers removed.

h11 frames every request toward the service, so the gate always knows where a response ends; but
h11 only speaks HTTP/1.1. An HTTP/1.0 request is therefore written out by the gate itself, while
h11 is told of the equivalent closing HTTP/1.1 request: it validates the same headers, frames the
same body (HTTP/1.0 has only Content-Length) and parses the response as it would anyway.
"""

from __future__ import annotations

import h11

from safetunnel.gate.auth import HeaderList


def request_head(client: h11.Connection, request: h11.Request, headers: HeaderList) -> bytes:
    """The bytes of ``request`` with ``headers`` for the service; h11.LocalProtocolError when
    they cannot be sent (then nothing was)."""
    if request.http_version == b"1.1":
        return client.send(
            h11.Request(method=request.method, target=request.target, headers=headers)
        )
    model = list(headers)
    if not any(name.lower() == b"host" for name, _ in headers):
        model.append((b"Host", b"localhost"))  # mandatory in HTTP/1.1 only; never sent
    # HTTP/1.0 closes after one exchange; h11 must expect the same of the service.
    model.append((b"Connection", b"close"))
    client.send(h11.Request(method=request.method, target=request.target, headers=model))
    lines = [request.method + b" " + request.target + b" HTTP/1.0"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"
