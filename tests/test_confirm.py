from __future__ import annotations

import dataclasses
import shlex
from datetime import UTC, datetime, timedelta, timezone

import pytest

from safetunnel import tokens
from safetunnel.sharing.preflight import ServiceInfo, assess_risks, needs_typed
from safetunnel.sharing.started import started_block
from safetunnel.sharing.summary import (
    ShareSummary,
    accepts_typed,
    accepts_yes,
    confirmation_block,
    typed_prompt,
)

CET = timezone(timedelta(hours=1), "CET")
EXPIRES = datetime(2026, 11, 29, 13, 30, tzinfo=UTC)
FINGERPRINT = "SHA256:Ynz3Vd0o0yq9nQ6i1Gf3mXw2T7pQ0bS4kY8hJcLrTzA"
TOKEN = "st_" + "A" * 40 + "x-_"

SERVICE = ServiceInfo(
    host="127.0.0.1",
    port=62893,
    pid=4242,
    process="python3",
    user="alice",
    exposed=False,
    listen_addresses=("127.0.0.1:62893",),
    protocol_guess="unknown",
)


def summary(**changes: object) -> ShareSummary:
    base = ShareSummary(
        service=SERVICE,
        ssh_user="alice",
        ssh_hostname="bastion.example.com",
        ssh_port=22,
        via_builtin=False,
        host_key_state="pinned",
        fingerprint=FINGERPRINT,
        ttl_seconds=1800,
        expires_at=EXPIRES,
        max_connections=20,
        key_type="ssh-ed25519",
        local_tz=CET,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def with_risks(s: ShareSummary, public: bool = False) -> ShareSummary:
    risks = assess_risks(s.service.port, public, s.ttl_seconds, s.service.exposed)
    bind = "0.0.0.0" if public else "127.0.0.1"
    return dataclasses.replace(s, risks=tuple(risks), remote_bind=bind)


GOLDEN = """\
About to share 127.0.0.1:62893: python3 (pid 4242, user alice)
  service    listens on 127.0.0.1:62893; protocol: unknown (the probe sends nothing to your service)
  via        SSH alice@bastion.example.com:22
  host key   ssh-ed25519 SHA256:Ynz3Vd0o0yq9nQ6i1Gf3mXw2T7pQ0bS4kY8hJcLrTzA, matches the pinned key
  remote     127.0.0.1:<port picked by the server> on bastion.example.com
  who        only users and processes on bastion.example.com itself (or colleagues via ssh -L)
  access     every connection must present the access token made for this share; HTTP or raw TCP
  until      30m after start: about 14:30:00 CET 2026-11-29 (13:30:00 UTC)
  limits     no idle limit; at most 20 connections at a time"""


def test_golden_block_for_the_plain_case() -> None:
    assert confirmation_block(summary()) == GOLDEN


def test_block_names_the_service_host_key_and_who() -> None:
    text = confirmation_block(summary(remote_port=40123, idle_seconds=600))
    for needle in (
        "127.0.0.1:62893",
        "python3",
        "pid 4242",
        "user alice",
        "alice@bastion.example.com:22",
        FINGERPRINT,
        "pinned",
        "127.0.0.1:40123 on bastion.example.com",
        "only users and processes on bastion.example.com",
        "must present the access token",
        "14:30:00 CET",
        "13:30:00 UTC",
        "30m",
        "10m without connections",
        "at most 20 connections",
    ):
        assert needle in text, needle


def test_block_is_compact_and_narrow() -> None:
    text = confirmation_block(
        with_risks(
            summary(
                service=dataclasses.replace(SERVICE, port=6379, exposed=True), ttl_seconds=6 * 3600
            ),
            public=True,
        )
    )
    lines = text.splitlines()
    assert 10 <= len(lines) <= 17
    assert max(map(len, lines)) <= 100


def test_a_ca_certified_key_says_so() -> None:
    text = " ".join(confirmation_block(summary(host_key_state="certified")).split())
    assert "certified by a CA that your known_hosts trusts (@cert-authority)" in text
    assert "pinned key" not in text


def test_newly_trusted_key_is_said_plainly() -> None:
    text = confirmation_block(summary(host_key_state="newly-trusted"))
    assert "trusted just now" in text
    assert "pinned" not in text


def test_builtin_gateway_wording() -> None:
    text = confirmation_block(
        summary(
            via_builtin=True,
            host_key_state="builtin",
            ssh_hostname="127.0.0.1",
            ssh_port=40001,
            key_type=None,
            fingerprint="SHA256:eph",
        )
    )
    assert "built-in SSH gateway" in text
    assert "only programs on this machine" in text
    assert "nothing leaves this computer" in text
    assert "SHA256:eph" in text
    assert "bastion" not in text


def test_public_wording() -> None:
    text = confirmation_block(with_risks(summary(), public=True))
    assert "ANYONE who can reach bastion.example.com" in text
    assert "all interfaces of bastion.example.com" in text
    assert "only users and processes" not in text
    assert "! --public" in text


def test_exposed_service_gets_one_loud_line_even_without_risk_list() -> None:
    exposed = dataclasses.replace(SERVICE, exposed=True, listen_addresses=("0.0.0.0:62893",))
    for s in (summary(service=exposed), with_risks(summary(service=exposed))):
        text = confirmation_block(s)
        assert text.count("ALREADY EXPOSED") == 1
        assert "0.0.0.0:62893" in text


def test_unknown_owner_and_invisible_socket_are_admitted() -> None:
    hidden = dataclasses.replace(SERVICE, pid=None, process=None, user=None, listen_addresses=())
    text = confirmation_block(summary(service=hidden))
    assert "cannot see" in text
    assert "exposure is unknown" in text


def test_risk_lines_and_local_day_rollover() -> None:
    s = with_risks(
        summary(ttl_seconds=6 * 3600, expires_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC))
    )
    text = confirmation_block(s)
    assert "! TTL of 6h is over 4h" in text
    assert "00:30:00 CET 2026-11-30 (23:30:00 UTC 2026-11-29)" in text


@pytest.mark.parametrize(
    ("port", "public", "ttl", "exposed", "typed"),
    [
        (62893, False, 1800, False, False),
        (62893, False, 1800, True, False),  # exposure is shown loudly, sharing does not worsen it
        (62893, True, 1800, False, True),
        (6379, False, 1800, False, True),
        (62893, False, 5 * 3600, False, True),
    ],
)
def test_typed_confirmation_exactly_when_risky(
    port: int, public: bool, ttl: int, exposed: bool, typed: bool
) -> None:
    service = dataclasses.replace(SERVICE, port=port, exposed=exposed)
    s = with_risks(summary(service=service, ttl_seconds=ttl), public=public)
    assert needs_typed(s.risks) is typed


def test_prompts_and_answers() -> None:
    s = summary()
    assert typed_prompt(s) == (
        "This share is risky. Type the port number (62893) to share it anyway:"
    )
    assert accepts_yes("y") and accepts_yes(" YES ")
    assert not any(accepts_yes(a) for a in ("", "n", "no", "yess", "ja"))
    assert accepts_typed(s, " 62893\n")
    assert not any(accepts_typed(s, a) for a in ("", "y", "yes", "6289", "62894"))


# ---------------------------------------------------------------- started_block


def test_started_block_loopback_has_curl_link_and_ssh_l() -> None:
    text = started_block(summary(), 40123, TOKEN, tunnel_id="st-1a2b3c")
    assert f"echo 'X-Safetunnel-Token: {TOKEN}' | curl -H @- http://127.0.0.1:40123/" in text
    assert f"http://127.0.0.1:40123/?safetunnel_token={TOKEN}" in text
    assert "ssh -N -L 40123:127.0.0.1:40123 alice@bastion.example.com" in text
    assert f"{{ echo 'SAFETUNNEL {TOKEN}'; cat; }} | nc 127.0.0.1 40123" in text  # both forms
    assert "14:30:00 CET" in text and "13:30:00 UTC" in text
    assert "Ctrl-C to stop" in text and "safetunnel kill st-1a2b3c" in text
    assert text.count(TOKEN) == 4  # token, curl, link, raw TCP: nothing else


def test_started_block_command_lines_are_not_wrapped() -> None:
    text = started_block(summary(), 40123, TOKEN)
    curl = next(line for line in text.splitlines() if "| curl -H @-" in line)
    assert curl.rstrip().endswith("http://127.0.0.1:40123/")


def test_started_block_public_has_no_ssh_l() -> None:
    text = started_block(with_risks(summary(), public=True), 40123, TOKEN)
    assert "ssh -N" not in text
    assert "http://bastion.example.com:40123/" in text
    assert "anywhere that can reach bastion.example.com" in text


def test_started_block_builtin_is_local_only() -> None:
    s = summary(
        via_builtin=True, host_key_state="builtin", ssh_hostname="127.0.0.1", ssh_port=40001
    )
    text = started_block(s, 40123, TOKEN)
    assert "http://127.0.0.1:40123/" in text
    assert "ssh -N" not in text
    assert "this machine only" in text


def test_started_block_nonstandard_ssh_port() -> None:
    text = started_block(summary(ssh_port=2222), 40123, TOKEN)
    assert "ssh -N -p 2222 -L 40123:127.0.0.1:40123 alice@bastion.example.com" in text


def test_ipv6_addresses_are_bracketed_where_a_port_follows() -> None:
    s = summary(remote_bind="::1", ssh_hostname="2001:db8::7", ssh_port=2222)
    block = confirmation_block(dataclasses.replace(s, remote_port=40123))
    assert "SSH alice@[2001:db8::7]:2222" in block
    assert "[::1]:40123 on 2001:db8::7" in block
    text = started_block(s, 40123, TOKEN)
    assert "http://[::1]:40123/" in text
    assert "at [::1]:40123 on 2001:db8::7" in text
    # ssh -L reads bind:port pairs, so an IPv6 bind needs brackets; the destination does not.
    assert "ssh -N -p 2222 -L 40123:[::1]:40123 alice@2001:db8::7" in text


def test_started_block_follows_protocol() -> None:
    http = started_block(summary(protocol="http"), 40123, TOKEN)
    assert "curl -H" in http and "SAFETUNNEL" not in http
    tcp = started_block(summary(protocol="tcp"), 40123, TOKEN)
    assert "curl" not in tcp and "safetunnel_token" not in tcp
    assert "| nc 127.0.0.1 40123" in tcp


def test_started_block_with_token_file_never_needs_the_token() -> None:
    s = summary(token_file="/tmp/my token")
    text = started_block(s, 40123, None)
    assert "written to /tmp/my token" in text
    assert "sed 's/^/X-Safetunnel-Token: /' '/tmp/my token' | curl -H @- http://" in text
    assert "{ sed 's/^/SAFETUNNEL /' '/tmp/my token'; cat; } | nc 127.0.0.1 40123" in text
    assert "st_" not in text and "$(" not in text


# Words of these commands stay inside the shell (builtins in bash, dash, zsh, ksh, fish and, for
# echo, csh): they reach no process's argv, which every local user can read in ps.
_SHELL_BUILTINS = {"echo", "printf"}


def _argv_words(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at | ; && and braces, as word lists."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in {"|", ";", "&&", "||", "{", "}"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [words for words in commands if words]


@pytest.mark.parametrize("protocol", ["http", "tcp"])
def test_printed_commands_keep_the_token_out_of_every_argv(protocol: str) -> None:
    text = started_block(summary(protocol=protocol), 40123, TOKEN)
    lines = [line for line in text.splitlines() if line.lstrip().startswith(("curl", "raw TCP"))]
    assert lines, text
    for line in lines:
        for words in _argv_words(line.split(None, 2 if "raw TCP" in line else 1)[-1]):
            if words[0] in _SHELL_BUILTINS:
                continue
            assert not any(TOKEN in word for word in words), f"token in the argv of {words}"


def test_started_block_refuses_non_tokens() -> None:
    with pytest.raises(ValueError, match="token"):
        started_block(summary(), 40123, 'st_"; rm -rf ~')
    with pytest.raises(ValueError, match="token"):
        started_block(summary(), 40123, None)
    assert tokens.looks_like_token(TOKEN)
