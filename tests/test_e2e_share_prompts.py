"""End to end through a pseudo-terminal: the y/N question, the typed confirmation of a risky
share, and trusting an unknown host key by typing `yes`."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e import E2E, assert_port_released, http_get, sshd_args
from services import http_keepalive
from shareproc import SCRIPT
from sshd import SSHD

from safetunnel.ssh.hostkeys import fingerprint

pytestmark = pytest.mark.sshd
_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


class PtyShare:
    """``safetunnel share`` with a pty as stdin, stdout and stderr (a real terminal to it)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([SCRIPT, *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.output = b""

    @property
    def text(self) -> str:
        return _ANSI.sub(b"", self.output).decode(errors="replace").replace("\r", "")

    def read_until(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} did not appear; output:\n{self.text}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited before {needle!r}; output:\n{self.text}")
                self.output += chunk
        return self.text

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):  # EIO once the child closed the terminal
                    self.output += os.read(self.master, 65536)
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


StartPty = Callable[..., PtyShare]


@pytest.fixture
def pty_share(e2e: E2E) -> Iterator[StartPty]:
    started: list[PtyShare] = []

    def start(*args: str) -> PtyShare:
        share = PtyShare(["share", *args], e2e.sandbox.env)
        started.append(share)
        return share

    yield start
    running = [s for s in started if s.proc.poll() is None]
    for share in started:
        share.close()
    assert not running, "a share under the pty was still running"


def _token_from(text: str) -> str:
    match = re.search(r"st_[A-Za-z0-9_-]{43}", text)
    assert match, text
    return match.group(0)


@pytest.mark.parametrize("answer", ["n", ""])
def test_declining_the_prompt_exits_3(e2e: E2E, sshd: SSHD, pty_share: StartPty,
                                      answer: str) -> None:
    service = e2e.service(http_keepalive)
    share = pty_share(str(service.port), "--ttl", "5s", *sshd_args(sshd))
    text = share.read_until("Share it? [y/N]")
    assert f"About to share 127.0.0.1:{service.port}" in text
    assert fingerprint(sshd.host_key) in text
    share.type(answer)
    assert share.wait() == 3, share.text
    assert "tcpip-forward" not in sshd.log_text()
    assert e2e.records() == []


def test_accepting_the_prompt_starts_and_serves(e2e: E2E, sshd: SSHD, pty_share: StartPty) -> None:
    service = e2e.service(http_keepalive)
    share = pty_share(str(service.port), "--ttl", "30s", *sshd_args(sshd))
    share.read_until("Share it? [y/N]")
    share.type("y")
    text = share.read_until("safetunnel_token=")
    token = _token_from(text)
    found = re.search(r"localhost:(\d+)", text.split("Share it?")[1])
    assert found, text
    port = int(found.group(1))
    assert http_get(port, "/tty", {"X-Safetunnel-Token": token}).status == 200
    share.proc.send_signal(signal.SIGINT)
    assert share.wait() == 130, share.text
    assert_port_released(port)
    e2e.tokens.append(token)  # checked against files, logs and what the service received


def test_risky_share_refuses_y_and_needs_the_typed_port(e2e: E2E, pty_share: StartPty) -> None:
    service = e2e.service(http_keepalive)
    declined = pty_share(str(service.port), "--ttl", "5h")  # over 4h: a risk
    text = declined.read_until("Type the port number")
    assert f"({service.port})" in text
    declined.type("y")
    assert declined.wait() == 3, declined.text

    accepted = pty_share(str(service.port), "--ttl", "5h", "--yes")  # --yes alone is not enough
    accepted.read_until("Type the port number")
    accepted.type(str(service.port))
    text = accepted.read_until("safetunnel_token=")
    token = _token_from(text)
    accepted.proc.send_signal(signal.SIGTERM)
    assert accepted.wait() == 0, accepted.text
    e2e.tokens.append(token)


def test_unknown_host_key_typed_yes_pins_in_own_known_hosts_only(
        e2e: E2E, sshd: SSHD, pty_share: StartPty, tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    user_known = tmp_path / "user_known_hosts"
    user_known.write_bytes(b"# nothing pinned\n")
    own = e2e.sandbox.config_dir / "known_hosts"
    share = pty_share(str(service.port), "--ttl", "3s", "--yes",
                      *sshd_args(sshd, known_hosts=user_known))
    text = share.read_until("Type 'yes' to trust")
    assert fingerprint(sshd.host_key) in text
    share.type("yes")
    share.read_until("safetunnel_token=")
    e2e.tokens.append(_token_from(share.text))
    assert share.wait() == 0, share.text  # TTL
    assert user_known.read_bytes() == b"# nothing pinned\n"
    pinned = own.read_text()
    assert f"[127.0.0.1]:{sshd.port}" in pinned and sshd.host_key.get_base64() in pinned

    # Now pinned: a non-interactive share goes through without asking.
    result = e2e.run(["share", str(service.port), "--ttl", "1s", "--yes", "--json",
                      *sshd_args(sshd, known_hosts=user_known)])
    assert result.returncode == 0, result.stderr


def test_unknown_host_key_answered_no_exits_4(e2e: E2E, sshd: SSHD, pty_share: StartPty,
                                              tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    user_known = tmp_path / "user_known_hosts"
    user_known.write_bytes(b"")
    share = pty_share(str(service.port), "--ttl", "3s", "--yes",
                      *sshd_args(sshd, known_hosts=user_known))
    share.read_until("Type 'yes' to trust")
    share.type("y")  # only the whole word counts
    assert share.wait() == 4, share.text
    assert not (e2e.sandbox.config_dir / "known_hosts").exists() or \
        sshd.host_key.get_base64() not in (e2e.sandbox.config_dir / "known_hosts").read_text()
    assert user_known.read_bytes() == b""
