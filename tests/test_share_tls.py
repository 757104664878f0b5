"""TLS in the share's pure parts: the risk of --no-tls, what replaces its typed answer, the request
checks, the confirmation and started blocks, the event, the ticket; and the ticket file's life."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_confirm import TOKEN, summary

from safetunnel.errors import ConfigError
from safetunnel.sharing import events
from safetunnel.sharing.acknowledge import typed_needed
from safetunnel.sharing.preflight import assess_risks
from safetunnel.sharing.request import ShareRequest, check_request, serves_tls
from safetunnel.sharing.started import started_block
from safetunnel.sharing.summary import TlsShown, confirmation_block
from safetunnel.sharing.tlscert import make_identity
from safetunnel.sharing.tokenfile import TicketFile, ticket_path
from safetunnel.sharing.tunnelconfig import Reach, TunnelConfig
from safetunnel.tickets import decode

PIN = "sha256//" + "p" * 43 + "="
MADE = TlsShown(pin=PIN, made=True, subject="CN=bastion", names=("bastion",), not_after=None)
OWN = TlsShown(
    pin=None,
    made=False,
    subject="CN=share.example.org",
    names=("share.example.org",),
    not_after=datetime(2027, 1, 2, 3, 4, tzinfo=UTC),
)


def test_no_tls_on_a_public_share_is_a_risk_that_yes_public_does_not_acknowledge() -> None:
    plain = assess_risks(8000, True, 600, False, tls=False)
    assert "no-tls" in [r.code for r in plain]
    assert "clear text" in next(r.message for r in plain if r.code == "no-tls")
    assert typed_needed(plain, yes=True, public=True, confirm_port=None)
    assert not typed_needed(plain, yes=True, public=True, confirm_port=8000)
    with_tls = assess_risks(8000, True, 600, False, tls=True)
    assert "no-tls" not in [r.code for r in with_tls]
    assert not typed_needed(with_tls, yes=True, public=True, confirm_port=None)
    loopback = assess_risks(8000, False, 600, False, tls=False)
    assert loopback == []  # a loopback share without TLS is the ordinary case


def test_tls_defaults_and_request_checks() -> None:
    assert serves_tls(ShareRequest(local=1, public=True))
    assert not serves_tls(ShareRequest(local=1))
    assert serves_tls(ShareRequest(local=1, tls=True))
    assert not serves_tls(ShareRequest(local=1, public=True, tls=False))
    assert serves_tls(ShareRequest(local=1, tls_cert="c", tls_key="k"))
    with pytest.raises(ConfigError, match="go together"):
        check_request(ShareRequest(local=1, tls_cert="c"))
    with pytest.raises(ConfigError, match="contradict"):
        check_request(ShareRequest(local=1, tls=False, tls_cert="c", tls_key="k"))


def test_confirmation_shows_the_pin_or_the_own_certificate() -> None:
    made = confirmation_block(summary(tls=MADE))
    assert f"  tls pin    {PIN}" in made.splitlines()  # a line of its own, never wrapped
    own = " ".join(confirmation_block(summary(tls=OWN)).split())
    assert "your certificate CN=share.example.org (share.example.org)" in own
    assert "valid until 2027-01-02 03:04 UTC" in own
    pending = dataclasses.replace(MADE, pin=None)
    assert "pin is shown once it starts" in confirmation_block(summary(tls=pending))
    assert "tls" not in confirmation_block(summary()).split()


def test_started_block_pins_curl_and_uses_https() -> None:
    text = started_block(summary(tls=MADE, remote_bind="0.0.0.0"), 40123, TOKEN)
    curl = next(line for line in text.splitlines() if "curl -H @-" in line)
    assert f"--pinnedpubkey '{PIN}' --insecure https://bastion.example.com:40123/" in curl
    assert "https://bastion.example.com:40123/?safetunnel_token=" in text
    assert "| nc " not in text  # nc speaks no TLS: the ticket and `connect` do
    own = started_block(summary(tls=OWN, remote_bind="0.0.0.0"), 40123, TOKEN)
    assert "--pinnedpubkey" not in own and "--insecure" not in own
    assert "curl -H @- https://bastion.example.com:40123/" in own
    plain = started_block(summary(), 40123, TOKEN)
    assert "http://" in plain and "https://" not in plain


def test_started_block_names_the_ticket_file_with_a_token_file() -> None:
    text = started_block(summary(token_file="/run/t/token"), 40123, None)
    assert "written to /run/t/token.ticket (not shown)" in " ".join(text.split())


def _config(**changes: Any) -> TunnelConfig:
    reach = Reach("alice@bastion", None, "SHA256:" + "q" * 43, "ssh-ed25519")
    base = TunnelConfig(local=("127.0.0.1", 8000), ttl=60, ssh_host="alice@bastion:22")
    values: dict[str, Any] = {"reach": reach, "public": True, "public_host": "bastion"}
    return dataclasses.replace(base, **(values | changes))


def test_config_links_tickets_and_the_started_event_carry_the_pin() -> None:
    identity = make_identity(["bastion"], datetime.now(UTC) + timedelta(hours=1))
    config = _config(tls=identity)
    assert config.link(4000, None) == "https://bastion:4000/"
    expires = datetime.now(UTC) + timedelta(minutes=5)
    ticket = config.ticket(4000, TOKEN, expires)
    assert ticket is not None and decode(ticket).tls_pin == identity.pin
    plain = _config()
    assert plain.link(4000, None) == "http://bastion:4000/"
    plain_ticket = plain.ticket(4000, TOKEN, expires)
    assert plain_ticket is not None and decode(plain_ticket).tls_pin is None
    started = events.Started(
        "st-1", 1, "l", "h", "0.0.0.0", 4000, "auto", None, "s", "e", "u", tls_pin=identity.pin
    )
    assert started.to_json()["tls_pin"] == identity.pin
    assert "tls_pin" not in dataclasses.replace(started, tls_pin=None).to_json()


def _tunnel(ticket_config: TunnelConfig) -> Any:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    return SimpleNamespace(config=ticket_config, remote_port=4000, token=TOKEN, expires_at=expires)


def test_ticket_file_is_written_0600_and_removed_with_the_share(tmp_path: Path) -> None:
    path = ticket_path(tmp_path / "token")
    assert path == tmp_path / "token.ticket"
    with contextlib.ExitStack() as stack:
        tickets = TicketFile(stack, path, keep=False)
        tickets.started(_tunnel(_config()))
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert decode(path.read_text()).token == TOKEN
    assert not path.exists()


def test_ticket_file_kept_on_request_but_not_after_a_failed_start(tmp_path: Path) -> None:
    path = tmp_path / "t.ticket"
    with contextlib.ExitStack() as stack:
        TicketFile(stack, path, keep=True).started(_tunnel(_config()))
    assert path.exists()
    path.unlink()
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        TicketFile(stack, path, keep=True).started(_tunnel(_config()))
        raise RuntimeError("the share failed to start")
    assert not path.exists()


def test_ticket_file_never_overwrites_and_is_not_written_after_the_end(tmp_path: Path) -> None:
    path = tmp_path / "t.ticket"
    path.write_text("mine\n")
    with pytest.raises(ConfigError, match="never overwritten"), contextlib.ExitStack() as stack:
        TicketFile(stack, path, keep=False)
    assert path.read_text() == "mine\n"
    late = tmp_path / "late.ticket"
    with contextlib.ExitStack() as stack:
        tickets = TicketFile(stack, late, keep=False)
    tickets.started(_tunnel(_config()))  # the share ended before it was up: nothing to write
    assert not late.exists()
    with contextlib.ExitStack() as stack:
        TicketFile(stack, late, keep=False).started(_tunnel(_config(reach=None)))
        assert not late.exists()  # no ticket (the built-in gateway): no file
