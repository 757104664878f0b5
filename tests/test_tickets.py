"""The ticket codec and where a share makes its ticket: pure, no network."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from safetunnel import tokens
from safetunnel.registry.audit import REDACTED, scrub
from safetunnel.sharing import events
from safetunnel.sharing.clientlines import host_for_others, ssh_forward_line
from safetunnel.sharing.tunnelconfig import Reach, TunnelConfig
from safetunnel.tickets import PREFIX, Ticket, TicketError, TicketExpired, decode

TOKEN = "st_" + "Ab1-_" * 8 + "xyz"
FP = "SHA256:" + "q" * 43
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def ticket(**changes: Any) -> Ticket:
    values: dict[str, Any] = {
        "ssh_host": "alice@bastion.example.com",
        "ssh_port": 2222,
        "host_key": FP,
        "key_type": "ssh-ed25519",
        "remote_bind": "127.0.0.1",
        "remote_port": 40123,
        "protocol": "auto",
        "expires_at": EXPIRES,
        "token": TOKEN,
    }
    return Ticket(**{**values, **changes})


def packed(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fields() -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(ticket().encode()[5:] + "==="))  # type: ignore[no-any-return]


def test_round_trip_keeps_every_field() -> None:
    assert tokens.looks_like_token(TOKEN)
    for original in (
        ticket(),
        ticket(ssh_port=None, key_type="", ssh_host="bastion"),
        ticket(tls_pin="sha256//" + "A" * 43 + "=", remote_bind="0.0.0.0", protocol="tcp"),
        ticket(ssh_host="bob@::1", remote_bind="::1"),
    ):
        text = original.encode()
        assert text.startswith("stt1_") and "=" not in text
        assert decode(f"  {text}\n") == original


def test_absent_optional_fields_stay_out_of_the_string() -> None:
    data = json.loads(base64.urlsafe_b64decode(ticket(ssh_port=None).encode()[5:] + "==="))
    assert set(data) == {"h", "k", "t", "b", "r", "m", "e", "s"}


def test_the_token_is_not_in_repr_or_in_any_error() -> None:
    assert TOKEN not in repr(ticket())
    data = fields()
    data["s"] = TOKEN[:-1] + "!"
    with pytest.raises(TicketError) as caught:
        decode(packed(data))
    assert TOKEN[:-1] not in caught.value.message and "token" in caught.value.message


def test_a_later_version_says_so() -> None:
    text = ticket().encode().replace("stt1_", "stt2_")
    with pytest.raises(TicketError, match="version 2"):
        decode(text)


@pytest.mark.parametrize(
    "text",
    ["", "st_" + "a" * 43, "stt1_", "stt1_abc=", "stt1_a b", "stt1_" + "A" * 3000, "stt1_%%%"],
)
def test_strings_that_are_no_ticket(text: str) -> None:
    with pytest.raises(TicketError) as caught:
        decode(text)
    assert caught.value.exit_code == 2 and caught.value.hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("h", "-oProxyCommand=x"),
        ("h", "a b"),
        ("p", 0),
        ("p", True),
        ("p", "22"),
        ("k", "MD5:aa"),
        ("k", "SHA256:" + "q" * 42),
        ("t", "SSH ED25519"),
        ("b", 2130706433),
        ("b", "localhost"),
        ("r", 70000),
        ("m", "udp"),
        ("e", "2030-01-02 03:04:05"),
        ("e", 1893553445),
        ("s", "st_short"),
        ("l", "sha256//short="),
    ],
)
def test_a_field_of_the_wrong_shape_is_refused(key: str, value: Any) -> None:
    data = fields()
    data[key] = value
    with pytest.raises(TicketError, match="damaged"):
        decode(packed(data))


@pytest.mark.parametrize("change", ["missing", "unknown", "list"])
def test_missing_unknown_or_no_fields_are_refused(change: str) -> None:
    data: Any = fields()
    if change == "missing":
        del data["k"]
    elif change == "unknown":
        data["x"] = 1
    else:
        data = [data]
    with pytest.raises(TicketError, match="damaged"):
        decode(packed(data))


def test_encode_refuses_what_decode_would() -> None:
    with pytest.raises(ValueError, match="cannot make a ticket"):
        ticket(token="not a token").encode()


def test_an_expired_ticket_is_refused_with_exit_2() -> None:
    ticket().check_fresh(EXPIRES - timedelta(seconds=1))
    with pytest.raises(TicketExpired, match="expired at 2030-01-02T03:04:05Z") as caught:
        ticket().check_fresh(EXPIRES)
    assert caught.value.exit_code == 2


def test_the_ticket_names_the_host_as_the_ssh_l_line_does() -> None:
    fallback = ("carol", "10.0.0.5", 22)
    assert host_for_others("ssh://alice@bastion:2222", fallback) == ("alice@bastion", "2222")
    assert host_for_others("ssh://[::1]", fallback) == ("::1", None)
    assert host_for_others("work-bastion", fallback) == ("work-bastion", None)
    assert host_for_others("", fallback) == ("carol@10.0.0.5", "22")
    line = ssh_forward_line("1:127.0.0.1:1", "my alias", fallback)
    assert line == "ssh -N -L 1:127.0.0.1:1 'my alias'"


def test_a_tunnel_makes_a_ticket_only_with_a_reach_and_a_shown_token() -> None:
    config = TunnelConfig(local=("127.0.0.1", 8000), ttl=60, ssh_host="alice@bastion:22")
    assert config.ticket(40123, TOKEN, EXPIRES) is None  # the built-in gateway: no reach
    config.reach = Reach("alice@bastion", None, FP, "ssh-ed25519")
    assert config.ticket(40123, None, EXPIRES) is None  # --token-file
    made = decode(config.ticket(40123, TOKEN, EXPIRES) or "")
    assert made == ticket(ssh_host="alice@bastion", ssh_port=None, remote_port=40123)


def test_the_started_event_ends_with_the_ticket_and_the_audit_never_keeps_it() -> None:
    text = ticket().encode()
    started = events.Started(
        id="st-1",
        pid=1,
        local="127.0.0.1:8000",
        ssh_host="alice@bastion:22",
        remote_bind="127.0.0.1",
        remote_port=40123,
        protocol="auto",
        token=TOKEN,
        started_at="2030-01-02T02:04:05Z",
        expires_at="2030-01-02T03:04:05Z",
        url="http://127.0.0.1:40123/",
        engine="openssh",
        ticket=text,
    )
    data = started.to_json()
    assert list(data)[-2:] == ["engine", "ticket"] and data["ticket"] == text
    assert "ticket" not in scrub(data)
    assert scrub({"message": f"pasted {text} here"}) == {"message": f"pasted {REDACTED} here"}


def test_the_started_block_shows_the_ticket_and_how_a_recipient_reads_it() -> None:
    from test_confirm import summary

    from safetunnel.sharing.started import started_block

    text = ticket().encode()
    block = started_block(summary(), 40123, TOKEN, tunnel_id="st-1", ticket=text)
    (line,) = [row for row in block.splitlines() if text in row]
    assert line.split() == ["ticket", text]  # one line, never wrapped: it is pasted whole
    assert "safetunnel connect -" in block
    assert text not in started_block(summary(), 40123, TOKEN, tunnel_id="st-1")
