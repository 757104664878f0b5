"""The local services behind the forwards, run as their own process (stdlib only, asyncio).

``python benchmarks/services.py`` listens on four loopback ports, prints one JSON line with them
(``{"sink": N, "echo": N, "reqrep": N, "http": N}``) and serves until stdin closes or SIGTERM:

- **sink**: counts the bytes it receives; after the client's EOF it replies ``<count>\\n`` and
  closes.
- **echo**: sends back every byte it receives.
- **reqrep**: reads one line, replies ``ok <line>\\n`` and closes (a one-shot exchange).
- **http**: HTTP/1.1 keep-alive. ``GET /big?mib=N`` returns N MiB (``application/octet-stream``);
  any other path returns a small text body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

BACKLOG = 4096
CHUNK = 1 << 20
_BLOCK = bytes(range(256)) * (CHUNK // 256)


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> bool:
        assert self.transport is not None
        self.transport.write(b"%d\n" % self.count)
        self.transport.close()
        return True


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.close()
        return True


class ReqRep(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer:
            line = self.buffer.split(b"\n", 1)[0]
            self.transport.write(b"ok " + line + b"\n")
            self.transport.close()
        elif len(self.buffer) > 4096:
            self.transport.close()


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target, _version = lines[0].split(b" ", 2)
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            path, _, query = target.partition(b"?")
            if path == b"/big":
                params = dict(p.partition(b"=")[::2] for p in query.split(b"&") if p)
                size = int(params.get(b"mib", b"1")) * CHUNK
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n" % size
                )
                if method != b"HEAD":
                    sent = 0
                    while sent < size:
                        writer.write(_BLOCK[: min(CHUNK, size - sent)])
                        sent += CHUNK
                        await writer.drain()
            else:
                body = b"hello " + path
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            await writer.drain()
            if close:
                break
    writer.close()


async def serve() -> None:
    loop = asyncio.get_running_loop()
    host = "127.0.0.1"
    servers = {
        "sink": await loop.create_server(Sink, host, 0, backlog=BACKLOG),
        "echo": await loop.create_server(Echo, host, 0, backlog=BACKLOG),
        "reqrep": await loop.create_server(ReqRep, host, 0, backlog=BACKLOG),
        "http": await asyncio.start_server(http_handler, host, 0, backlog=BACKLOG, limit=64 * 1024),
    }
    ports = {name: server.sockets[0].getsockname()[1] for name, server in servers.items()}
    print(json.dumps(ports), flush=True)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    # The parent holds our stdin; when it goes away (even by SIGKILL) we see EOF and exit.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else done.set())
    await done.wait()
    for server in servers.values():
        server.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
