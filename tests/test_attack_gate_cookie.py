"""The link cookie: a per-share session secret, never the token, accepted only by its own share.

The attack: the cookie used to hold the raw token with ``SameSite=Lax``; browsers send cookies to
every port of a host, so any local listener the victim's browser visits received the token.
"""

from __future__ import annotations

import dataclasses

from gatekit import COOKIE, TOKEN, TUNNEL_ID, cookie_pair, make_policy, request, run, set_cookie

from safetunnel import tokens
from safetunnel.gate.policy import GatePolicy

LINK = request(f"/page?safetunnel_token={TOKEN}")


def test_the_link_cookie_is_a_session_secret_not_the_token() -> None:
    result = run([("remote", LINK)], start=400.5, expires_at=1000.0)
    name, value = cookie_pair(result).split("=", 1)
    assert name == COOKIE
    assert TOKEN not in result.remote.decode(), "the token came back in the 303"
    assert value != TOKEN and not value.startswith(tokens.PREFIX)
    assert not tokens.looks_like_token(value)
    assert len(value) >= 43  # at least as much entropy as a token
    attributes = {part.strip() for part in set_cookie(result).split(";")[1:]}
    assert attributes == {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=599"}


def test_the_session_cookie_works_on_the_next_request_and_is_stripped() -> None:
    policy = make_policy()
    pair = cookie_pair(run([("remote", LINK)], policy=policy))
    nxt = request("/next", [("Cookie", f"theme=dark; {pair}; lang=en")])
    result = run([("remote", LINK), ("remote", nxt)], policy=policy)
    assert result.connects == 1
    assert (
        result.service
        == b"GET /next HTTP/1.1\r\nHost: localhost\r\nCookie: theme=dark; lang=en\r\n\r\n"
    )


def test_a_cookie_carrying_the_token_is_refused() -> None:
    result = run([("remote", request("/", [("Cookie", f"{COOKIE}={TOKEN}")]))])
    assert b"401" in result.remote and result.service == b"" and result.connects == 0
    assert result.close.reason == "unauthorized" and result.close.refused


def test_the_session_cookie_of_another_share_is_refused_and_stripped() -> None:
    other = GatePolicy.for_token(TOKEN, "st-999999")  # even with the same token
    other_pair = cookie_pair(run([("remote", LINK)], policy=other))
    other_value = other_pair.split("=", 1)[1]
    # Under its own name it is stripped; under this share's name it does not verify.
    alone = run([("remote", request("/", [("Cookie", other_pair)]))])
    assert b"401" in alone.remote and alone.service == b""
    renamed = run([("remote", request("/", [("Cookie", f"{COOKIE}={other_value}")]))])
    assert b"401" in renamed.remote and renamed.service == b""
    beside = run(
        [
            (
                "remote",
                request("/", [("X-Safetunnel-Token", TOKEN), ("Cookie", f"a=1; {other_pair}")]),
            )
        ]
    )
    assert beside.connects == 1
    assert other_value.encode() not in beside.service and b"Cookie: a=1\r\n" in beside.service


def test_a_session_secret_is_not_a_token_anywhere_else() -> None:
    pair = cookie_pair(run([("remote", LINK)]))
    value = pair.split("=", 1)[1]
    for carrier in ([("X-Safetunnel-Token", value)], [("Authorization", f"Bearer {value}")]):
        result = run([("remote", request("/", carrier))])
        assert b"401" in result.remote and result.service == b""
    assert b"401" in run([("remote", request(f"/?safetunnel_token={value}"))]).remote


def test_each_share_makes_its_own_secret_and_keeps_only_its_hash() -> None:
    first, second = GatePolicy.for_token(TOKEN, TUNNEL_ID), GatePolicy.for_token(TOKEN, TUNNEL_ID)
    assert first.session_hash != second.session_hash
    one = cookie_pair(run([("remote", LINK)], policy=first))
    two = cookie_pair(run([("remote", LINK)], policy=second))
    assert one != two
    for field in dataclasses.fields(first):
        held = getattr(first, field.name)
        assert one.split("=", 1)[1].encode() != held and TOKEN.encode() != held, field.name
    assert one.split("=", 1)[1] not in repr(first) and TOKEN not in repr(first)
    # A policy made without a session accepts no cookie at all.
    bare = GatePolicy(tokens.hash_token(TOKEN), TUNNEL_ID)
    result = run([("remote", request("/", [("Cookie", one)]))], policy=bare)
    assert b"401" in result.remote
