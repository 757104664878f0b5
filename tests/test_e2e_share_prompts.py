"""End to end through a pseudo-terminal: the y/N question, the typed confirmation of a risky
share, and trusting an unknown host key by typing `yes`."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e import E2E, Pty, assert_port_released, http_get, sshd_args, token_from
from services import http_keepalive
from sshd import SSHD

from safetunnel.ssh.hostkeys import fingerprint

pytestmark = pytest.mark.sshd


StartPty = Callable[..., Pty]


@pytest.fixture
def pty_share(e2e: E2E) -> Iterator[StartPty]:
    started: list[Pty] = []

    def start(*args: str) -> Pty:
        share = Pty(["share", *args], e2e.sandbox.env)
        started.append(share)
        return share

    yield start
    running = [s for s in started if s.proc.poll() is None]
    for share in started:
        share.close()
    assert not running, "a share under the pty was still running"


@pytest.mark.parametrize("answer", ["n", ""])
def test_declining_the_prompt_exits_3(
    e2e: E2E, sshd: SSHD, pty_share: StartPty, answer: str
) -> None:
    service = e2e.service(http_keepalive)
    share = pty_share(str(service.port), "--ttl", "5s", *sshd_args(sshd))
    text = share.expect("Share it? [y/N]")
    assert f"About to share 127.0.0.1:{service.port}" in text
    assert fingerprint(sshd.host_key) in text
    share.send(answer)
    assert share.wait() == 3, share.text
    assert "tcpip-forward" not in sshd.log_text()
    assert e2e.records() == []


def test_end_of_input_at_the_prompt_is_a_decline(e2e: E2E, sshd: SSHD, pty_share: StartPty) -> None:
    # Ctrl-D is "no answer", which the y/N question reads as No: exit 3, not the 130 of Ctrl-C.
    service = e2e.service(http_keepalive)
    share = pty_share(str(service.port), "--ttl", "5s", *sshd_args(sshd))
    share.expect("Share it? [y/N]")
    os.write(share.master, b"\x04")
    assert share.wait() == 3, share.text
    assert "tcpip-forward" not in sshd.log_text()


def test_accepting_the_prompt_starts_and_serves(e2e: E2E, sshd: SSHD, pty_share: StartPty) -> None:
    service = e2e.service(http_keepalive)
    share = pty_share(str(service.port), "--ttl", "30s", *sshd_args(sshd))
    share.expect("Share it? [y/N]")
    share.send("y")
    text = share.expect("safetunnel_token=")
    token = token_from(text)
    found = re.search(r" at 127\.0\.0\.1:(\d+)", text.split("Share it?")[1])
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
    text = declined.expect("Type the port number")
    assert f"({service.port})" in text
    declined.send("y")
    assert declined.wait() == 3, declined.text

    accepted = pty_share(str(service.port), "--ttl", "5h", "--yes")  # --yes alone is not enough
    accepted.expect("Type the port number")
    accepted.send(str(service.port))
    text = accepted.expect("safetunnel_token=")
    token = token_from(text)
    accepted.proc.send_signal(signal.SIGTERM)
    assert accepted.wait() == 0, accepted.text
    e2e.tokens.append(token)


def test_unknown_host_key_typed_yes_pins_in_own_known_hosts_only(
    e2e: E2E, sshd: SSHD, pty_share: StartPty, tmp_path: Path
) -> None:
    service = e2e.service(http_keepalive)
    user_known = tmp_path / "user_known_hosts"
    user_known.write_bytes(b"# nothing pinned\n")
    own = e2e.sandbox.config_dir / "known_hosts"
    share = pty_share(
        str(service.port), "--ttl", "3s", "--yes", *sshd_args(sshd, known_hosts=user_known)
    )
    text = share.expect("Type 'yes' to trust")
    assert fingerprint(sshd.host_key) in text
    share.send("yes")
    share.expect("safetunnel_token=")
    e2e.tokens.append(token_from(share.text))
    assert share.wait() == 0, share.text  # TTL
    assert user_known.read_bytes() == b"# nothing pinned\n"
    pinned = own.read_text()
    assert f"[127.0.0.1]:{sshd.port}" in pinned and sshd.host_key.get_base64() in pinned

    # Now pinned: a non-interactive share goes through without asking.
    result = e2e.run(
        "share",
        str(service.port),
        "--ttl",
        "1s",
        "--yes",
        "--json",
        *sshd_args(sshd, known_hosts=user_known),
    )
    assert result.returncode == 0, result.stderr


def test_unknown_host_key_answered_no_exits_4(
    e2e: E2E, sshd: SSHD, pty_share: StartPty, tmp_path: Path
) -> None:
    service = e2e.service(http_keepalive)
    user_known = tmp_path / "user_known_hosts"
    user_known.write_bytes(b"")
    share = pty_share(
        str(service.port), "--ttl", "3s", "--yes", *sshd_args(sshd, known_hosts=user_known)
    )
    share.expect("Type 'yes' to trust")
    share.send("y")  # only the whole word counts: asked again
    share.expect("Please type 'yes', 'no' or the fingerprint")
    share.send("")  # empty declines
    assert share.wait() == 4, share.text
    assert (
        not (e2e.sandbox.config_dir / "known_hosts").exists()
        or sshd.host_key.get_base64() not in (e2e.sandbox.config_dir / "known_hosts").read_text()
    )
    assert user_known.read_bytes() == b""
