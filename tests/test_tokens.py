from __future__ import annotations

import hashlib

from safetunnel import tokens


def test_generate_shape_and_entropy() -> None:
    seen = {tokens.generate() for _ in range(200)}
    assert len(seen) == 200
    for token in seen:
        assert token.startswith("st_")
        assert len(token) == 46
        assert tokens.looks_like_token(token)


def test_hash_is_sha256() -> None:
    token = tokens.generate()
    assert tokens.hash_token(token) == hashlib.sha256(token.encode()).digest()
    assert tokens.hash_token(token.encode()) == tokens.hash_token(token)


def test_verify_accepts_only_the_token() -> None:
    token = tokens.generate()
    digest = tokens.hash_token(token)
    assert tokens.verify(token, digest)
    assert not tokens.verify(token[:-1], digest)
    assert not tokens.verify(tokens.generate(), digest)
    assert not tokens.verify("", digest)


def test_hash_prefix_is_short_and_not_the_token() -> None:
    token = tokens.generate()
    prefix = tokens.hash_prefix(tokens.hash_token(token))
    assert len(prefix) == 8
    assert prefix not in token
    assert all(c in "0123456789abcdef" for c in prefix)


def test_looks_like_token_rejects_near_misses() -> None:
    good = tokens.generate()
    assert not tokens.looks_like_token(good + "x")
    assert not tokens.looks_like_token("st-" + good[3:])
    assert not tokens.looks_like_token(good[:-1] + "!")
