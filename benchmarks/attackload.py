"""Attack traffic against a share on 127.0.0.1, run as its own process (stdlib only).

Used by the attack tests and by the benchmark: the attacker's sockets and CPU stay out of the
share's process, as they would be in life. It reads one JSON spec line on stdin (stdin, because
the spec may carry the valid token, and argv is visible in ``ps``) and prints JSON lines on
stdout; it never prints the token.

Modes:

- ``flood``: ``idle`` connections that never send a byte, plus ``wrong`` clients sending
  wrong-token requests back to back; once both are under way, ``valid`` requests with the right
  token, one after the other. Result: how many valid requests got ``200``.
- ``junk``: ``count`` connections, each sending a refused request followed by ``mib`` MiB of
  junk (as far as the share lets it). Prints ``{"event": "sent", ...}`` and holds the
  connections until a line arrives on stdin, so the parent can sample the share's memory.
- ``pipeline``: one connection with the right token sends ``mib`` MiB of pipelined requests
  behind one that the service never answers; holds like ``junk``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

MIB = 1 << 20
WRONG_TOKEN = "st_" + "A" * 43


def request(token: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Safetunnel-Token: {token}\r\n\r\n".encode()


async def status_of(port: int, token: str, timeout: float) -> int:
    """One request on a fresh connection; the reply's status, 0 when there was none."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(request(token))
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.") else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


async def hold_idle(port: int, count: int, opened: list[asyncio.StreamWriter]) -> None:
    for _ in range(count):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        opened.append(writer)


async def flood(spec: dict[str, Any]) -> dict[str, Any]:
    port, stop = spec["port"], asyncio.Event()
    sent = [0]

    async def wrong_client() -> None:
        while not stop.is_set():
            await status_of(port, WRONG_TOKEN, 10.0)
            sent[0] += 1

    idle: list[asyncio.StreamWriter] = []
    begin = time.perf_counter()
    await hold_idle(port, int(spec["idle"]), idle)
    attackers = [asyncio.create_task(wrong_client()) for _ in range(int(spec["wrong"]))]
    while sent[0] < int(spec["wrong"]):  # the flood is in full swing
        await asyncio.sleep(0.05)
    swing = time.perf_counter()
    statuses, latencies = [], []
    for _ in range(int(spec["valid"])):
        start = time.perf_counter()
        statuses.append(await status_of(port, spec["token"], float(spec.get("timeout", 10.0))))
        latencies.append(time.perf_counter() - start)
    stop.set()
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    for writer in idle:
        writer.close()
    return {
        "valid": len(statuses),
        "valid_ok": statuses.count(200),
        "statuses": sorted(set(statuses)),
        "wrong_sent": sent[0],
        "idle_opened": len(idle),
        "max_valid_latency_s": round(max(latencies), 3),
        "seconds_to_full_swing": round(swing - begin, 3),
        "seconds": round(time.perf_counter() - begin, 3),
        "value": statuses.count(200) / max(1, len(statuses)),
    }


async def send_junk(port: int, head: bytes, mib: int) -> tuple[asyncio.StreamWriter | None, int]:
    """Send ``head`` then up to ``mib`` MiB; stops when the share stops taking it."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None, 0
    sent, block = 0, b"j" * (64 * 1024)
    try:
        writer.write(head)
        while sent < mib * MIB:
            writer.write(block)
            await asyncio.wait_for(writer.drain(), 2.0)
            sent += len(block)
    except (OSError, TimeoutError):
        pass
    return writer, sent


async def hold_until_told(writers: list[asyncio.StreamWriter | None], sent: int) -> dict[str, Any]:
    print(json.dumps({"event": "sent", "bytes": sent}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in writers:
        if writer is not None:
            writer.close()
    return {"bytes": sent, "value": sent / MIB}


async def junk(spec: dict[str, Any]) -> dict[str, Any]:
    head = request(WRONG_TOKEN)
    done = await asyncio.gather(
        *(send_junk(spec["port"], head, int(spec["mib"])) for _ in range(int(spec["count"])))
    )
    return await hold_until_told([w for w, _ in done], sum(n for _, n in done))


async def pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    head = request(spec["token"], "/hold")  # the service never answers this one
    writer, sent = await send_junk(spec["port"], head, 0)
    if writer is not None:
        behind = request(spec["token"], "/small")
        block = behind * (64 * 1024 // len(behind))
        try:
            while sent < int(spec["mib"]) * MIB:
                writer.write(block)
                await asyncio.wait_for(writer.drain(), 2.0)
                sent += len(block)
        except (OSError, TimeoutError):
            pass
    return await hold_until_told([writer], sent)


MODES = {"flood": flood, "junk": junk, "pipeline": pipeline}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    result = asyncio.run(MODES[spec["mode"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
