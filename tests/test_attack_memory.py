"""Attack: junk behind refused requests must not bloat a share.

250 connections each send a wrong-token request followed by up to 4 MiB of junk, and stay open.
The share (the real console script, through a real sshd) must stay within its memory budget:
its resident memory before the attack, plus 1 MiB per connection the attack opened. Before the
fix every refused channel was left open during its failure delay and filled its 2 MiB SSH window:
the share grew by more than 500 MiB with no allowed connection at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e import E2E
from services import http_keepalive
from sshd import SSHD

ATTACKLOAD = Path(__file__).resolve().parent.parent / "benchmarks" / "attackload.py"
MIB = 1 << 20
CONNECTIONS = 250


def peak_rss(pid: int) -> int:
    """The process's highest resident set size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.slow
@pytest.mark.parametrize("through", ["sshd", "builtin"])
def test_junk_behind_refused_requests_stays_within_the_budget(
    e2e: E2E, request: pytest.FixtureRequest, through: str
) -> None:
    via: SSHD | None = request.getfixturevalue("shared_sshd") if through == "sshd" else None
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, ttl="2m", via=via)
    started = e2e.started(proc)
    base = peak_rss(proc.proc.pid)
    attacker = subprocess.Popen(
        [sys.executable, str(ATTACKLOAD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert attacker.stdin is not None and attacker.stdout is not None
    spec = {"mode": "junk", "port": started["remote_port"], "count": CONNECTIONS, "mib": 4}
    attacker.stdin.write(json.dumps(spec) + "\n")
    attacker.stdin.flush()
    sent = json.loads(attacker.stdout.readline())  # every connection sent what it could
    for _ in range(CONNECTIONS):  # and the share turned every one of them away
        assert proc.next_event("connection")["allowed"] is False
    attacker.stdin.write("done\n")
    attacker.stdin.flush()
    attacker.wait(30)
    grown = peak_rss(proc.proc.pid)
    budget = base + CONNECTIONS * MIB
    assert grown <= budget, (
        f"share RSS {grown / MIB:.0f} MiB after {CONNECTIONS} connections sent "
        f"{sent['bytes'] / MIB:.0f} MiB of junk behind refused requests; budget "
        f"{budget / MIB:.0f} MiB ({base / MIB:.0f} MiB before + 1 MiB per connection)"
    )
    assert proc.proc.poll() is None  # still serving
    proc.proc.terminate()
    assert proc.wait(15) == 0, proc.stderr
