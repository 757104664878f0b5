"""Recipients at the gate: several named tokens, each revocable while connections run."""

from __future__ import annotations

import pytest
from gatekit import TOKEN, TUNNEL_ID, drain, request, response, run

from safetunnel import tokens
from safetunnel.gate import recipients
from safetunnel.gate.core import Gate
from safetunnel.gate.events import Close, Connect, Event, ToRemote, ToService
from safetunnel.gate.policy import GatePolicy, session_secret
from safetunnel.gate.recipients import Recipient, RecipientBook, RecipientError, match

ALICE = tokens.generate()
BOB = tokens.generate()


def policy() -> GatePolicy:
    made = GatePolicy.for_token(TOKEN, TUNNEL_ID)
    made.mint("alice", ALICE)
    made.mint("bob", BOB)
    return made


def with_token(token: str, target: str = "/") -> bytes:
    return request(target, [("X-Safetunnel-Token", token)])


@pytest.mark.parametrize(
    ("token", "name"),
    [(TOKEN, "default"), (ALICE, "alice"), (BOB, "bob")],
    ids=["default", "alice", "bob"],
)
def test_each_recipients_token_admits_http_and_names_its_recipient(token: str, name: str) -> None:
    result = run([("remote", with_token(token))], policy=policy())
    assert result.events[1] == Connect("http", name)
    assert result.gate.recipients == {name}
    assert token.encode() not in result.service


@pytest.mark.parametrize(("token", "name"), [(ALICE, "alice"), (BOB, "bob")], ids=["alice", "bob"])
def test_each_recipients_token_admits_tcp_and_names_its_recipient(token: str, name: str) -> None:
    result = run([("remote", f"SAFETUNNEL {token}\nhi".encode())], policy=policy())
    assert Connect("tcp", name) in result.events
    assert result.service == b"hi"


def test_a_revoked_token_is_refused_on_the_next_request_of_a_kept_alive_connection() -> None:
    shared = policy()
    gate = Gate(shared, 0.0)
    gate.receive_remote(with_token(ALICE, "/one"))
    first = [gate.next_event(0.0) for _ in range(2)]
    assert first[0] == Connect("http", "alice") and isinstance(first[1], ToService)
    gate.receive_service(response())
    shared.recipients.revoke("alice")
    gate.receive_remote(with_token(ALICE, "/two"))
    events: list[Event] = []
    drain(gate, 0.0, events)
    # Its first request was let in, so the connection stays "allowed"; the revoked token is no
    # guess, so it costs no failure.
    assert events[-1] == Close("revoked", allowed=True, refused=False)
    assert isinstance(events[-2], ToRemote) and events[-2].data.startswith(b"HTTP/1.1 401")
    assert not any(isinstance(e, ToService) and b"/two" in e.data for e in events)


def test_revoking_one_recipient_leaves_the_others_working() -> None:
    shared = policy()
    shared.recipients.revoke("alice")
    refused = run([("remote", with_token(ALICE))], policy=shared)
    assert refused.close.reason == "revoked" and refused.connects == 0
    tcp = run([("remote", f"SAFETUNNEL {ALICE}\n".encode())], policy=shared)
    assert tcp.close.reason == "revoked" and tcp.connects == 0
    kept = run([("remote", with_token(BOB))], policy=shared)
    assert kept.events[1] == Connect("http", "bob")


def test_revoking_a_recipient_voids_the_cookie_its_link_handed_out() -> None:
    shared = policy()
    cookie = session_secret(ALICE.encode(), shared.session_salt).decode()
    headers = [("Cookie", f"safetunnel_{TUNNEL_ID}={cookie}")]
    assert run([("remote", request("/", headers))], policy=shared).connects == 1
    shared.recipients.revoke("alice")
    assert run([("remote", request("/", headers))], policy=shared).connects == 0


def test_a_link_names_its_recipient_and_a_revoked_link_is_refused() -> None:
    shared = policy()
    link = run([("remote", request(f"/?safetunnel_token={BOB}"))], policy=shared)
    assert link.remote.startswith(b"HTTP/1.1 303") and link.gate.recipients == {"bob"}
    shared.recipients.revoke("bob")
    again = run([("remote", request(f"/?safetunnel_token={BOB}"))], policy=shared)
    assert again.remote.startswith(b"HTTP/1.1 401")


def test_the_share_own_token_can_be_revoked_too() -> None:
    shared = policy()
    shared.recipients.revoke("default")
    assert run([("remote", with_token(TOKEN))], policy=shared).close.reason == "revoked"
    assert run([("remote", with_token(ALICE))], policy=shared).connects == 1


def test_match_compares_every_candidate_with_every_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = recipients.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(recipients.hmac, "compare_digest", counting)
    book = (
        Recipient("a", tokens.hash_token(ALICE)),
        Recipient("b", tokens.hash_token(BOB)),
        Recipient("c", tokens.hash_token(TOKEN)),
    )
    # The first candidate matches the first recipient: no early exit all the same.
    assert match([ALICE.encode(), b"st_wrong"], book, cookie=False) == "a"
    assert len(compared) == 6


def test_an_empty_session_digest_never_matches() -> None:
    book = (Recipient("a", tokens.hash_token(ALICE)),)
    assert match([b""], book, cookie=True) is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 33, "ä", "a/b", "a\n"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(RecipientError):
        RecipientBook().add(Recipient(name, tokens.hash_token(ALICE)))


def test_names_are_unique_even_after_revocation() -> None:
    shared = policy()
    with pytest.raises(RecipientError):
        shared.mint("alice", tokens.generate())
    shared.recipients.revoke("alice")
    with pytest.raises(RecipientError):
        shared.mint("alice", tokens.generate())
    with pytest.raises(RecipientError):
        shared.recipients.revoke("alice")


def test_a_revoked_token_is_refused_without_counting_as_a_failure() -> None:
    shared = policy()
    shared.recipients.revoke("alice")
    http = run([("remote", with_token(ALICE))], policy=shared)
    assert http.remote.startswith(b"HTTP/1.1 401")
    assert http.close == Close("revoked", allowed=False, refused=False)
    tcp = run([("remote", f"SAFETUNNEL {ALICE}\n".encode())], policy=shared)
    assert tcp.close == Close("revoked", allowed=False, refused=False)
    cookie = session_secret(ALICE.encode(), shared.session_salt).decode()
    headers = [("Cookie", f"safetunnel_{TUNNEL_ID}={cookie}")]
    assert run([("remote", request("/", headers))], policy=shared).close.reason == "revoked"
    # A guess is still a failure, however many recipients were revoked.
    guess = run([("remote", with_token(tokens.generate()))], policy=shared)
    assert guess.close == Close("unauthorized", allowed=False, refused=True)


def test_a_revoked_token_beside_a_guess_counts_as_a_failure() -> None:
    shared = policy()
    shared.recipients.revoke("alice")
    headers = [("X-Safetunnel-Token", ALICE), ("Authorization", f"Bearer {tokens.generate()}")]
    paired = run([("remote", request("/", headers))], policy=shared)
    assert paired.close == Close("unauthorized", allowed=False, refused=True)
