"""The load generator, run as its own process for every measurement (stdlib only).

It reads one JSON spec line on stdin (stdin, not argv, because the spec may carry a token, and
argv is visible to every user in ``ps``), runs one measurement against 127.0.0.1:PORT, and prints
one JSON result line on stdout. It never prints the spec's ``prefix`` or ``headers``.

Spec keys: ``mode`` (bulk_tcp | bulk_http | connrate | http_rps | held), ``port``, ``prefix``
(a string sent first on every raw TCP connection, e.g. the safetunnel preamble; ``""`` for ssh),
``headers`` (extra HTTP request headers), plus per mode: ``mib``; ``clients`` and ``seconds``;
``count``.

``held`` talks a little more: after opening its connections it prints
``{"event": "holding", ...}`` and waits for a line on stdin before it checks every connection
again and closes them, so that the parent can sample the forwarder's memory in between.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from typing import Any

MIB = 1 << 20
TIMEOUT = 30.0


def _connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": pick(0.5) * 1000, "p90_ms": pick(0.9) * 1000, "p99_ms": pick(0.99) * 1000}


def bulk_tcp(spec: dict[str, Any]) -> dict[str, Any]:
    """One stream of ``mib`` MiB to the sink; the sink's byte count proves it all arrived."""
    total = int(spec["mib"]) * MIB
    block = memoryview(bytes(range(256)) * (256 * 1024 // 256))
    start = time.perf_counter()
    with _connect(spec["port"]) as sock:
        if spec["prefix"]:
            sock.sendall(spec["prefix"].encode())
        sent = 0
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            sock.sendall(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        reply = _recv_all(sock)
    elapsed = time.perf_counter() - start
    if reply.strip() != str(total).encode():
        return {"error": f"sink counted {reply.strip()[:40]!r}, expected {total}"}
    return {"bytes": total, "seconds": elapsed, "value": total * 8 / elapsed / 1e9}


def bulk_http(spec: dict[str, Any]) -> dict[str, Any]:
    """``GET /big?mib=N`` and read the whole body; throughput of the response direction."""
    mib = int(spec["mib"])
    headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    request = (
        f"GET /big?mib={mib} HTTP/1.1\r\nHost: bench\r\n{headers}Connection: close\r\n\r\n"
    ).encode()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    start = time.perf_counter()
    with _connect(spec["port"]) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                return {"error": f"connection closed before the response head ({len(head)} B)"}
            head += data
        head, _, body_start = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            return {"error": f"status {status[:60]!r}"}
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ),
            -1,
        )
        got = len(body_start)
        while got < length:
            n = sock.recv_into(view)
            if not n:
                break
            got += n
    elapsed = time.perf_counter() - start
    if length != mib * MIB or got != length:
        return {"error": f"body {got} B of content-length {length}, expected {mib * MIB}"}
    return {"bytes": got, "seconds": elapsed, "value": got * 8 / elapsed / 1e9}


def connrate(spec: dict[str, Any]) -> dict[str, Any]:
    """``clients`` threads, each doing one-shot exchanges back to back for ``seconds``."""
    port, clients, seconds = spec["port"], int(spec["clients"]), float(spec["seconds"])
    prefix = spec["prefix"].encode()
    lock = threading.Lock()
    done: list[int] = []
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        count = 0
        mine: list[float] = []
        failures: list[str] = []
        barrier.wait()
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            line = b"ping %d-%d\n" % (index, i)
            t0 = time.perf_counter()
            try:
                with _connect(port, 10.0) as sock:
                    sock.sendall(prefix + line)
                    reply = _recv_all(sock)
                if reply != b"ok " + line:
                    failures.append(f"reply {reply[:40]!r}")
                    continue
            except OSError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
                continue
            mine.append(time.perf_counter() - t0)
            count += 1
        with lock:
            done.append(count)
            latencies.extend(mine)
            errors.extend(failures)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline = start + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    total = sum(done)
    return {
        "connections": total,
        "seconds": elapsed,
        "value": total / elapsed,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        **_percentiles(latencies),
    }


def http_rps(spec: dict[str, Any]) -> dict[str, Any]:
    """Small keep-alive requests, one at a time on one connection, for ``seconds``."""
    headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    request = f"GET /small HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
    expected = b"hello /small"
    count = 0
    start = time.perf_counter()
    deadline = start + float(spec["seconds"])
    with _connect(spec["port"]) as sock:
        buffer = b""
        while time.perf_counter() < deadline:
            sock.sendall(request)
            while not buffer.endswith(expected):
                data = sock.recv(65536)
                if not data:
                    return {"error": f"closed after {count} requests"}
                buffer += data
            if b" 200 " not in buffer.split(b"\r\n", 1)[0] + b" ":
                return {"error": f"status {buffer[:60]!r}"}
            buffer = b""
            count += 1
    elapsed = time.perf_counter() - start
    return {"requests": count, "seconds": elapsed, "value": count / elapsed}


async def _held(spec: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` connections (64 at a time), one echo round trip each, hold, check again."""
    port, count, prefix = spec["port"], int(spec["count"]), spec["prefix"].encode()
    gate = asyncio.Semaphore(64)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors: list[str] = []

    async def open_one(i: int) -> None:
        line = b"hello %d\n" % i
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), TIMEOUT
                )
                writer.write(prefix + line)
                echoed = await asyncio.wait_for(reader.readexactly(len(line)), TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(f"open: {type(exc).__name__}: {exc}")
                return
            if echoed != line:
                errors.append("open: echo mismatch")
                writer.close()
                return
            conns.append((reader, writer))

    start = time.perf_counter()
    await asyncio.gather(*(open_one(i) for i in range(count)))
    open_s = time.perf_counter() - start
    print(
        json.dumps(
            {"event": "holding", "open": len(conns), "errors": len(errors), "open_seconds": open_s}
        ),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    alive = 0
    late: list[str] = []

    async def check(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal alive
        async with gate:
            try:
                writer.write(b"still there?\n")
                echoed = await asyncio.wait_for(reader.readexactly(13), TIMEOUT)
                if echoed == b"still there?\n":
                    alive += 1
                else:
                    late.append("check: echo mismatch")
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                late.append(f"check: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(check(r, w) for r, w in conns))
    for _, writer in conns:
        writer.close()
    all_errors = errors + late
    return {
        "requested": count,
        "opened": len(conns),
        "alive_after_hold": alive,
        "open_seconds": open_s,
        "errors": len(all_errors),
        "error_samples": sorted(set(all_errors))[:5],
        "value": len(all_errors),
    }


def held(spec: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_held(spec))


MODES = {
    "bulk_tcp": bulk_tcp,
    "bulk_http": bulk_http,
    "connrate": connrate,
    "http_rps": http_rps,
    "held": held,
}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    try:
        result = MODES[spec["mode"]](spec)
    except OSError as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
