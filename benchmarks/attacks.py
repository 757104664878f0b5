"""The "attack" stage of the benchmark: what an attacker without the token costs a share.

Each scenario runs against a fresh ``safetunnel share`` through the benchmark's sshd, with the
attacker (attackload.py) in its own process:

- ``flood``: 300 idle connections plus 300 clients sending wrong-token requests back to back;
  meanwhile a token holder makes requests one after the other. Reported: the share of them
  that got ``200``, and the slowest one.
- ``junk``: 250 connections, each a refused request followed by 4 MiB of junk. Reported: the
  share's peak RSS (VmHWM) once it has turned all of them away, and its RSS before.
- ``pipeline``: one connection with the token sends MiBs of pipelined requests behind one the
  service never answers. Reported: the share's peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.forwarders import BenchError, Forwarder, memory

if TYPE_CHECKING:
    from benchmarks.bench import Bench

ATTACKLOAD = Path(__file__).resolve().parent / "attackload.py"
MB = 1_000_000


def attack(bench: Bench, forwarder: Forwarder, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start attackload.py against ``forwarder`` (the token goes in on stdin, never argv)."""
    proc = bench.children.popen(
        [sys.executable, str(ATTACKLOAD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    token = forwarder.headers.get("X-Safetunnel-Token", "")
    line = {"port": forwarder.remote_port, "token": token, **spec}
    proc.stdin.write(json.dumps(line).encode() + b"\n")
    proc.stdin.flush()
    return proc


def last_json(proc: subprocess.Popen[bytes], timeout: float = 180.0) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        raise BenchError("the attacker printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def stage_attack(bench: Bench) -> None:
    """On the first engine measured only: the gate and the pump are the same on both, and
    the attacks cost minutes each."""
    if not bench.st_enabled:
        return
    engine = bench.engines[0]
    flood(bench, engine)
    spec = {"mode": "junk", "count": 250, "mib": 4}
    held_memory(bench, engine, "junk", spec, "http", wait_for=250)
    mib = 16 if bench.config.rounds <= 2 else 64
    held_memory(bench, engine, "pipeline", {"mode": "pipeline", "mib": mib}, "sink", wait_for=0)


def flood(bench: Bench, engine: str) -> None:
    ok = bench.metric("flood_valid_ok", "token holder's requests OK during a flood", "%")
    slowest = bench.metric(
        "flood_valid_max_s", "  slowest token holder's request", "s", higher_is_better=False
    )
    valid = 5 if bench.config.rounds <= 2 else 20
    share = bench.start_share("http", "http", engine=engine)
    try:
        spec = {"mode": "flood", "idle": 300, "wrong": 300, "valid": valid}
        result = last_json(attack(bench, share, spec))
        ok.add(engine, 100.0 * result["value"], result)
        slowest.add(engine, result["max_valid_latency_s"], {})
        bench.notes.append(
            f"flood: {result['valid_ok']}/{result['valid']} valid requests got 200 during "
            f"{result['wrong_sent']} wrong-token requests (300 at a time) and "
            f"{result['idle_opened']} idle connections"
        )
    finally:
        bench.stop_forwarder(share)


def held_memory(
    bench: Bench, engine: str, key: str, spec: dict[str, Any], service: str, wait_for: int
) -> None:
    """Run a holding attack; the share's peak RSS once it has turned ``wait_for`` away."""
    peak = bench.metric(
        f"{key}_peak_rss", f"{key} attack: share peak RSS", "MB", higher_is_better=False
    )
    share = bench.start_share(service, "http", engine=engine)
    try:
        before = memory(share.pid).get("peak_rss", 0)
        seen = share.events.get("connection", 0)
        proc = attack(bench, share, spec)
        assert proc.stdin is not None and proc.stdout is not None
        sent = json.loads(proc.stdout.readline() or b"{}")
        deadline = time.monotonic() + 60
        while share.events.get("connection", 0) < seen + wait_for:
            if time.monotonic() > deadline:
                raise BenchError(f"{key}: the share did not turn {wait_for} connections away")
            time.sleep(0.1)
        after = memory(share.pid).get("peak_rss", 0)
        proc.stdin.write(b"done\n")
        proc.stdin.flush()
        proc.wait(30)
        detail = {"before_mb": before / MB, "sent_mib": sent.get("bytes", 0) / (1 << 20)}
        peak.add(engine, after / MB, detail)
        bench.notes.append(
            f"{key}: share peak RSS {after / MB:.0f} MB (from {before / MB:.0f} MB) after "
            f"{detail['sent_mib']:.0f} MiB sent; alive: {share.alive()}"
        )
    finally:
        bench.stop_forwarder(share)
