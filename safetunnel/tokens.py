"""Access tokens: generation, hashing and constant-time verification. Pure.

A token is ``st_`` followed by 43 url-safe characters (256 bits). Only its SHA-256 digest is kept;
logs and records show at most the first 8 hex characters of that digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "st_"
TOKEN_RE = re.compile(r"st_[A-Za-z0-9_-]{43}")
HASH_PREFIX_LEN = 8
# More than a token file or a ticket file holds: a longer file is not one a share wrote.
FILE_MAX_BYTES = 4096


def generate() -> str:
    """A fresh token: ``st_`` + ``secrets.token_urlsafe(32)`` (43 characters, 256 bits)."""
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_token(value: str) -> bool:
    """True when ``value`` has the exact shape of a safetunnel token."""
    return TOKEN_RE.fullmatch(value) is not None


def hash_token(token: str | bytes) -> bytes:
    """SHA-256 digest of the token; this is what is kept in memory."""
    raw = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


def verify(candidate: str | bytes, token_hash: bytes) -> bool:
    """Constant-time check of ``candidate`` against a stored digest."""
    return hmac.compare_digest(hash_token(candidate), token_hash)


def hash_prefix(token_hash: bytes) -> str:
    """The safe-to-log short form: the first 8 hex characters of the digest."""
    return token_hash.hex()[:HASH_PREFIX_LEN]
