"""Who may pass a share's gates: one named token digest per recipient, revocable while running.

The set changes while gates run (``safetunnel ticket`` adds, ``safetunnel revoke`` removes), so a
gate never keeps a copy: every check reads :meth:`RecipientBook.current`, an immutable tuple that
a change replaces whole. A revoked token is thereby refused on its very next request, even on a
kept-alive connection. Only digests are held, never a token.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from safetunnel import tokens

DEFAULT_NAME = "default"
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")


class RecipientError(ValueError):
    """A name that is malformed, taken, or unknown."""


def check_name(name: str) -> str:
    """``name`` if it is a short ``[A-Za-z0-9._-]`` name, else RecipientError."""
    if NAME_RE.fullmatch(name) is None:
        raise RecipientError("a recipient name is 1-32 characters of A-Z a-z 0-9 . _ -")
    return name


@dataclass(frozen=True)
class Recipient:
    """One recipient: its token's digest and the digest of the link cookie minted from it."""

    name: str
    token_hash: bytes = field(repr=False)
    session_hash: bytes = field(default=b"", repr=False)


def match(
    candidates: Iterable[bytes], recipients: tuple[Recipient, ...], cookie: bool
) -> str | None:
    """The name of the recipient one of ``candidates`` belongs to, or None.

    Every candidate is compared with every recipient, in constant time and with no early exit,
    so the time taken says nothing about which comparison (if any) matched. ``cookie`` selects
    the session digests instead of the token digests.
    """
    found: str | None = None
    for candidate in candidates:
        digest = tokens.hash_token(candidate)
        for recipient in recipients:
            expected = recipient.session_hash if cookie else recipient.token_hash
            # An empty digest (no cookie for this recipient) must never match.
            same = hmac.compare_digest(digest, expected) and bool(expected)
            if same and found is None:
                found = recipient.name
    return found


class RecipientBook:
    """The live set of recipients of one share; thread-safe, read without a lock."""

    def __init__(self, recipients: Iterable[Recipient] = ()) -> None:
        self._lock = threading.Lock()
        self._current: tuple[Recipient, ...] = tuple(recipients)
        self._revoked: tuple[Recipient, ...] = ()

    def current(self) -> tuple[Recipient, ...]:
        """The recipients whose tokens pass right now (one attribute read: atomic)."""
        return self._current

    def revoked(self) -> tuple[Recipient, ...]:
        """Recipients withdrawn from this share: a token of theirs is told from a guess."""
        return self._revoked

    def add(self, recipient: Recipient) -> None:
        """Admit a new recipient; a name is used once per share, even after its revocation."""
        check_name(recipient.name)
        with self._lock:
            names = {r.name for r in (*self._current, *self._revoked)}
            if recipient.name in names:
                raise RecipientError(f"recipient {recipient.name!r} exists already")
            self._current = (*self._current, recipient)

    def revoke(self, name: str) -> None:
        """Withdraw ``name`` at once; RecipientError when there is no such live recipient."""
        with self._lock:
            gone = tuple(r for r in self._current if r.name == name)
            if not gone:
                raise RecipientError(f"no live recipient {name!r}")
            self._revoked = (*self._revoked, *gone)
            self._current = tuple(r for r in self._current if r.name != name)


def refusal(revoked: bool) -> tuple[str, bool]:
    """(reason, counts as a failure) of a refused token.

    A revoked token is no guess (guessing one is as hopeless as guessing a live one): it is
    refused all the same, but not counted against the failure budget, so a recipient whose
    client keeps retrying after the revocation cannot run the share into ``--max-failures``.
    """
    return ("revoked", False) if revoked else ("unauthorized", True)
