"""Where a request may carry the token, and how every trace of it is removed before forwarding.

Pure functions over header lists and request targets; http.py decides what to do with the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from safetunnel import tokens
from safetunnel.gate.location import same_origin_path
from safetunnel.gate.recipients import Recipient, match, refusal

HeaderList = list[tuple[bytes, bytes]]

TOKEN_HEADER = b"x-safetunnel-token"
LINK_PARAM = "safetunnel_token"
COOKIE_PREFIX = b"safetunnel_"
# One request is one failure for the budget, so it may test only a few candidates: a header, a
# bearer and a cookie, not hundreds of guesses packed into one request.
MAX_CANDIDATES = 3


@dataclass
class Carried:
    """Token candidates found in one request, and the request with all of them removed."""

    headers: HeaderList = field(default_factory=list)
    header_tokens: list[bytes] = field(default_factory=list)
    cookie_secrets: list[bytes] = field(default_factory=list)
    link_tokens: list[bytes] = field(default_factory=list)
    # The target's path as sent, and its query without link parameters (None: none is left).
    path: bytes = b"/"
    query: bytes | None = None

    @property
    def location(self) -> bytes:
        """The target without ``safetunnel_token`` parameters, as a safe same-origin redirect
        path. Made only when asked: only a link's answer needs it, not every request."""
        return same_origin_path(self.path) + (b"" if self.query is None else b"?" + self.query)

    def admitted(self, recipients: tuple[Recipient, ...]) -> str | None:
        """The recipient whose token a header or bearer carries, or whose session secret this
        share's cookie carries; None when none does.

        The token itself is not accepted in the cookie: a cookie reaches every port of its
        host, so what it carries must be worth as little as possible anywhere else.
        """
        if len(self.header_tokens) + len(self.cookie_secrets) > MAX_CANDIDATES:
            return None
        # Evaluate all of them, so timing does not reveal which carrier was right.
        by_header = match(self.header_tokens, recipients, cookie=False)
        by_cookie = match(self.cookie_secrets, recipients, cookie=True)
        return by_header if by_header is not None else by_cookie


def refused(carried: Carried, revoked: tuple[Recipient, ...]) -> tuple[str, bool]:
    """Why a request that no live recipient admitted is refused: (reason, counts as failure).

    Only a request that carries nothing but one revoked token or cookie goes uncounted: one
    with more candidates could pair it with a guess, and every guess must cost a failure.
    """
    shown = carried.header_tokens + carried.cookie_secrets + carried.link_tokens
    if len(shown) != 1:
        return refusal(False)
    by_token = match([*carried.header_tokens, *carried.link_tokens], revoked, cookie=False)
    by_cookie = match(carried.cookie_secrets, revoked, cookie=True)
    return refusal(by_token is not None or by_cookie is not None)


def extract(raw_headers: Iterable[tuple[bytes, bytes]], target: bytes, cookie: bytes) -> Carried:
    """Split token carriers off a request. ``raw_headers`` keep their original name casing."""
    carried = Carried()
    for name, value in raw_headers:
        lower = name.lower()
        if lower == TOKEN_HEADER:
            carried.header_tokens.append(value.strip())
        elif lower == b"authorization" and _bearer_token(value) is not None:
            carried.header_tokens.append(_bearer_token(value) or b"")
        elif lower == b"cookie":
            kept = _strip_cookie(value, cookie, carried.cookie_secrets)
            if kept:
                carried.headers.append((name, kept))
        else:
            carried.headers.append((name, value))
    carried.path, carried.query = _strip_link(target, carried.link_tokens)
    return carried


def _bearer_token(value: bytes) -> bytes | None:
    # Only an ``st_`` bearer is ours; any other Authorization belongs to the application.
    # Any whitespace separates scheme and credential (a tab is as valid as a space in HTTP).
    parts = value.split(None, 1)
    if len(parts) != 2:
        return None
    scheme, credential = parts[0], parts[1].strip()
    if scheme.lower() == b"bearer" and credential.startswith(tokens.PREFIX.encode()):
        return credential
    return None


def _strip_cookie(value: bytes, cookie: bytes, found: list[bytes]) -> bytes:
    """Keep the application's cookies; drop every ``safetunnel_*`` one, in any spelling.

    Browsers do not separate cookies by port, so a viewer of two tunnels on the same host sends
    both tunnels' cookies to each: forwarding the other one would hand tunnel A's secret to
    tunnel B's service. Only this tunnel's own cookie is a candidate. Servers differ on names'
    case and on ``,`` as a separator, so a pair that mentions ``safetunnel_`` anywhere is
    dropped whole rather than guessed at.
    """
    kept: list[bytes] = []
    for pair in value.split(b";"):
        pair = pair.strip()
        name, eq, content = pair.partition(b"=")
        if eq and name.strip() == cookie:
            found.append(content.strip().strip(b'"'))
        elif COOKIE_PREFIX not in pair.lower() and pair:
            kept.append(pair)
    return b"; ".join(kept)


def _strip_link(target: bytes, found: list[bytes]) -> tuple[bytes, bytes | None]:
    """The target's path, and its query without ``safetunnel_token`` parameters."""
    path, question, query = target.partition(b"?")
    kept: list[bytes] = []
    for pair in query.split(b"&") if question else []:
        name, _, value = pair.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == LINK_PARAM.encode():
            found.append(unquote_to_bytes(value.replace(b"+", b" ")))
        else:
            kept.append(pair)
    return path, b"&".join(kept) if kept else None


def link_reply_headers(location: bytes, cookie: bytes, secret: bytes, max_age: float) -> HeaderList:
    """Headers of the 303 that trades a link token for this share's session cookie.

    ``SameSite=Strict``: no other site's page can make the browser send it, and ``HttpOnly``:
    no script of the shared service can read it.
    """
    set_cookie = cookie + b"=" + secret + b"; HttpOnly; SameSite=Strict; Path=/"
    if math.isfinite(max_age):
        # An infinite TTL gets a session cookie; Max-Age must be a whole number of seconds.
        set_cookie += b"; Max-Age=%d" % max(0, int(max_age))
    return [
        (b"Location", location),
        (b"Set-Cookie", set_cookie),
        (b"Referrer-Policy", b"no-referrer"),
        (b"Cache-Control", b"no-store"),
        (b"Content-Length", b"0"),
    ]


def valid_link_token(
    carried: Carried, recipients: tuple[Recipient, ...]
) -> tuple[bytes, str] | None:
    """The link candidate that verified (to mint the cookie from) and its recipient, if any."""
    if len(carried.link_tokens) != 1:
        return None  # one link carries one token; more is guessing in bulk
    token = carried.link_tokens[0]
    name = match([token], recipients, cookie=False)
    return None if name is None else (token, name)
