"""What the confirmation block says about the local service is the truth, whoever else runs
processes on the machine.

1. The owning process's name (psutil, i.e. /proc/PID/stat's comm, or argv[0] when comm is
   15 bytes long) is chosen by whoever runs the listening process: escape sequences (conceal,
   cursor moves) and newlines must not reach the terminal, where they could hide or forge the
   lines that follow ("ALREADY EXPOSED", "who", ...).
2. The owner named is the socket that takes connections to the shared address, even when its
   process is hidden from this user, not a visible process listening on another address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from e2e import E2E, Pty

from safetunnel.sharing.owner import Listener, pick_owner

# A listener on 127.0.0.1:PORT whose comm is chosen by whoever runs it (any local user can).
_NAMED_LISTENER = r"""
import socket, sys, time
with open('/proc/self/comm', 'wb') as comm:
    comm.write(sys.argv[1].encode()[:15])
sock = socket.socket()
sock.bind(('127.0.0.1', 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
time.sleep(60)
"""

# 14 bytes: fits in comm. ESC[8m conceals all later text on a terminal; the newline forges a line.
_HOSTILE_NAME = "web\x1b[8m\n  who x"


@pytest.fixture
def hostile_listener() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _NAMED_LISTENER, _HOSTILE_NAME], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def test_process_name_cannot_inject_escapes_or_lines_into_the_block(
    e2e: E2E, hostile_listener: int
) -> None:
    # No --host and no default host: the built-in gateway, so no sshd is needed.
    with Pty(["share", str(hostile_listener), "--ttl", "5s"], e2e.sandbox.env) as share:
        share.expect("Share it? [y/N]")
        raw = share.output
        share.send("n")
        assert share.wait() == 3, share.text
    block = raw[raw.index(b"About to share") : raw.index(b"Share it?")]
    assert b"\x1b" not in block, block  # would conceal everything after it on a real terminal
    lines = block.replace(b"\r", b"").split(b"\n")
    # The line after the header is the service line, not one the process wrote.
    assert lines[1].startswith(b"  service"), lines[:3]
    assert not any(line.startswith(b"  who x") for line in lines), lines


def test_owner_of_the_exact_bind_is_not_replaced_by_another_address() -> None:
    # 127.0.0.1:8000 is held by another user's process (pid hidden); this user's own server
    # listens on [::1]:8000. Connections to 127.0.0.1:8000 reach the hidden one, yet the block
    # would name the ::1 process as what is being shared.
    hidden = Listener("127.0.0.1", 8000, None)
    mine = Listener("::1", 8000, 1234)
    assert pick_owner([hidden, mine], "127.0.0.1") == hidden  # its process: unknown
    other = Listener("127.0.0.1", 8000, 99)
    assert pick_owner([Listener("::1", 8000, None), other], "::1") == Listener("::1", 8000, None)
    # A visible exact bind still wins, and a wildcard stands in for a missing exact bind.
    assert pick_owner([mine, Listener("::1", 8000, None)], "::1") == mine
    assert pick_owner([Listener("0.0.0.0", 8000, 7), mine], "127.0.0.1") == Listener(
        "0.0.0.0", 8000, 7
    )
