"""Attack: read the token from ``ps`` while someone uses the printed command lines.

Every local user can read every process's argv (``ps aux``, /proc/PID/cmdline). The started block
prints a ``curl`` line and a raw-TCP line to paste into a shell; the token must reach curl and nc
through a pipe, never as a word of their argv. Each line is pasted into a real shell (the script
arrives on a file descriptor, as a paste does, so the shell's own argv holds no token either) and
run against a real share; while the client is connected, the argv of every process on the machine
is scanned for the token.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from e2e import E2E, ShareProcess, stop, token_from, wait_for
from services import echo

from safetunnel.sharing.blocktext import LABEL

SHELLS = [shell for shell in ("bash", "sh", "zsh") if shutil.which(shell)]

# A stand-in for nc (not installed everywhere): stdin to the socket, the socket to stdout.
NC = """\
import socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def send():
    while chunk := sys.stdin.buffer.read1(65536):
        sock.sendall(chunk)
threading.Thread(target=send, daemon=True).start()
while data := sock.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


class HeldHTTP:
    """An HTTP service that answers only once the test lets it, so the client stays alive."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: socket.socket, record: Callable[[bytes], None]) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                return  # pre-flight's probe
            record(data)
            head += data
        self.arrived.set()
        self.release.wait(30)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def printed_line(proc: ShareProcess, label: str) -> str:
    """The copy-paste command under ``label`` in the started block (stderr, human mode)."""
    assert wait_for(lambda: "Ctrl-C to stop" in proc.stderr, 30), proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith(f"  {label:<{LABEL - 2}}"))
    return line[LABEL:]


def paste(shell: str, line: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run ``line`` in ``shell`` the way a paste runs it: the script is read from a descriptor,
    not given as ``sh -c LINE`` (which would put the line, token and all, in the shell's argv)."""
    script_r, script_w = os.pipe()
    os.write(script_w, (line + "\n").encode())
    os.close(script_w)
    try:
        return subprocess.Popen(
            [shell, f"/dev/fd/{script_r}"],
            pass_fds=(script_r,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(script_r)


def argv_holding(secret: str) -> list[tuple[int, list[str]]]:
    """Every process on the machine whose argv contains ``secret``, as ``ps`` would show it."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        words = process.info["cmdline"] or []
        if any(secret in word for word in words):
            found.append((process.pid, words))
    return found


def running(shell: subprocess.Popen[bytes], program: str) -> bool:
    """Whether ``program`` runs in the pasted line's process tree (so the scan can see it)."""
    for process in psutil.Process(shell.pid).children(recursive=True):
        # A step of the line that has just ended (a zombie, or gone) has no argv to show.
        with contextlib.suppress(psutil.Error):
            if program in " ".join(process.cmdline()):
                return True
    return False


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("token_file", [False, True], ids=["shown", "token-file"])
def test_the_printed_curl_line_works_and_no_argv_holds_the_token(
    e2e: E2E, tmp_path: Path, shell: str, token_file: bool
) -> None:
    held = HeldHTTP()
    service = e2e.service(held)
    extra = ["--token-file", str(tmp_path / "token")] if token_file else []
    proc = e2e.share(service.port, "--protocol", "http", *extra, ttl="30s", as_json=False)
    line = printed_line(proc, "curl")
    token = (tmp_path / "token").read_text().strip() if token_file else token_from(proc.stderr)
    e2e.tokens.append(token)
    e2e.token_files.append(tmp_path / "token")

    client = paste(shell, line)
    try:
        assert held.arrived.wait(20), client.stderr.read1() if client.stderr else ""
        assert running(client, "curl"), "curl is not running: the scan below would prove nothing"
        exposed = argv_holding(token)
    finally:
        held.release.set()
    out, err = client.communicate(timeout=20)
    assert stop(proc, e2e.env) == 0
    assert exposed == [], f"the token is in the argv of {len(exposed)} process(es): {exposed}"
    assert (client.returncode, out) == (0, b"ok"), err


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("token_file", [False, True], ids=["shown", "token-file"])
def test_the_printed_raw_tcp_line_works_and_no_argv_holds_the_token(
    e2e: E2E, tmp_path: Path, shell: str, token_file: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nc").write_text(f"#!{sys.executable}\n{NC}")
    (bin_dir / "nc").chmod(0o755)
    service = e2e.service(echo)
    extra = ["--token-file", str(tmp_path / "token")] if token_file else []
    proc = e2e.share(service.port, "--protocol", "tcp", *extra, ttl="30s", as_json=False)
    line = printed_line(proc, "raw TCP")
    token = (tmp_path / "token").read_text().strip() if token_file else token_from(proc.stderr)
    e2e.tokens.append(token)
    e2e.token_files.append(tmp_path / "token")

    env = {**e2e.env, "PATH": f"{bin_dir}{os.pathsep}{e2e.env['PATH']}"}
    client = paste(shell, line, env)
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"hello through the gate\n")
        client.stdin.flush()
        echoed = b""
        while b"\n" not in echoed and select.select([client.stdout], [], [], 20)[0]:
            chunk = os.read(client.stdout.fileno(), 65536)
            if not chunk:
                break
            echoed += chunk
        assert echoed == b"hello through the gate\n", client.stderr
        exposed = argv_holding(token)
    finally:
        os.killpg(client.pid, signal.SIGTERM)
        client.communicate(timeout=20)
    assert stop(proc, e2e.env) == 0
    assert exposed == [], f"the token is in the argv of {len(exposed)} process(es): {exposed}"
    assert bytes(service.received) == b"hello through the gate\n"
