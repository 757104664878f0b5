"""What one tunnel's gates enforce: token digest, session cookie, protocol and limits."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from safetunnel import tokens
from safetunnel.gate.recipients import DEFAULT_NAME, Recipient, RecipientBook

GateProtocol = Literal["auto", "http", "tcp"]


@dataclass(frozen=True)
class GatePolicy:
    """Settings shared by every gate of a tunnel; fixed for the tunnel's life.

    What changes while a tunnel runs (its expiry) is passed to ``Gate.next_event`` instead, so
    a gate never reads a value that another thread is moving.

    ``session_salt`` and ``session_hash`` make the link's cookie (see :func:`session_secret`):
    without them (the defaults) no cookie is ever accepted. ``max_buffered_remote`` is how many
    unread remote bytes a gate holds before it asks its driver to stop reading
    (``Gate.wants_remote_data``); it must fit a whole request head, or a head that never fits
    would wait for its deadline with nobody reading.
    """

    token_hash: bytes
    tunnel_id: str
    protocol: GateProtocol = "auto"
    header_timeout: float = 10.0
    max_header_bytes: int = 16384
    max_preamble_bytes: int = 256
    session_salt: bytes = dataclasses.field(default=b"", repr=False)
    session_hash: bytes = dataclasses.field(default=b"", repr=False)
    max_buffered_remote: int = 64 * 1024
    # Not an init field: ``dataclasses.replace`` then builds a fresh book from the digests above
    # instead of sharing (and mutating) another policy's.
    recipients: RecipientBook = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_buffered_remote < max(self.max_header_bytes, self.max_preamble_bytes):
            raise ValueError("max_buffered_remote must hold a whole request head or preamble")
        # The share's own token is a recipient like any other, so it can be revoked too. The
        # book is the one thing about a policy that changes while gates run.
        own = Recipient(DEFAULT_NAME, self.token_hash, self.session_hash)
        object.__setattr__(self, "recipients", RecipientBook([own]))

    def mint(self, name: str, token: str) -> None:
        """Admit ``token`` as recipient ``name``: its digest, and its own link cookie's digest,
        so revoking the name also voids the cookies its links handed out."""
        session = b""  # a policy with no salt accepts no cookie at all
        if self.session_salt:
            session = tokens.hash_token(session_secret(token.encode(), self.session_salt))
        self.recipients.add(Recipient(name, tokens.hash_token(token), session))

    @classmethod
    def for_token(cls, token: str, tunnel_id: str, protocol: GateProtocol = "auto") -> GatePolicy:
        """The policy of a new share: the token's digest and a fresh session for its links.

        Called once per share, so every share gets its own salt, and a cookie minted by one
        share never verifies at another, even one started with the same token.
        """
        salt = secrets.token_bytes(32)
        return cls(
            tokens.hash_token(token),
            tunnel_id,
            protocol=protocol,
            session_salt=salt,
            session_hash=tokens.hash_token(session_secret(token.encode(), salt)),
        )


def session_secret(token: bytes, salt: bytes) -> bytes:
    """The link cookie's value: a keyed digest of the share's random salt, in hex.

    Derived rather than stored so that a gate holds only its digest, yet can mint it for whoever
    shows the token in a link; one-way, so a leaked cookie never yields the token. Hex cannot
    look like a token (no ``st_``), and secret-scanning for tokens does not flag it as one.
    """
    return (
        hmac.new(token, b"safetunnel session cookie\x00" + salt, hashlib.sha256)
        .hexdigest()
        .encode()
    )
