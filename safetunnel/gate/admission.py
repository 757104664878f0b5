"""Who one HTTP request is, and which form of it may pass: a pure decision per request head.

A request is let in either by a token it carries (a header, a bearer, this share's cookie, a
link), or because its connection opened with the raw preamble of a recipient (``connect``): then
that recipient is the connection's, and every request on it is checked against the recipients
live at that moment, so a revocation refuses the very next one. Either way every carrier of a
token is removed before the request is forwarded, and a head that still holds anything shaped
like a token is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from safetunnel.gate import auth, leaks
from safetunnel.gate.recipients import RecipientBook, refusal
from safetunnel.gate.responses import BAD_REQUEST, UNAUTHORIZED


@dataclass(frozen=True)
class Admit:
    """Forward ``request`` (carriers removed) with ``headers``, as ``name``'s."""

    name: str
    request: h11.Request
    headers: auth.HeaderList


@dataclass(frozen=True)
class Link:
    """Trade a link token for this share's cookie: a 303 to ``location``."""

    name: str
    token: bytes
    location: bytes


@dataclass(frozen=True)
class Refuse:
    """Answer ``reply`` and close; ``failure``: counts against the failure budget."""

    reason: str
    failure: bool
    reply: bytes


Decision = Admit | Link | Refuse


def admit(
    request: h11.Request, cookie: bytes, book: RecipientBook, bound: str | None = None
) -> Decision:
    """What to do with ``request``; ``bound`` names the recipient whose preamble opened the
    connection (None: the request must carry its own token)."""
    carried = auth.extract(request.headers.raw_items(), request.target, cookie)
    if bound is not None:
        return _admit_bound(request, carried, book, bound)
    live = book.current()  # re-read per request: a revocation applies at once
    if carried.link_tokens:
        link = auth.valid_link_token(carried, live)
        if link is None:
            return Refuse(*auth.refused(carried, book.revoked()), UNAUTHORIZED)
        if leaks.holds_token(carried.location, []):
            return Refuse("bad-request", True, BAD_REQUEST)
        return Link(link[1], link[0], carried.location)
    name = carried.admitted(live)
    if name is None:
        return Refuse(*auth.refused(carried, book.revoked()), UNAUTHORIZED)
    return _checked(Admit(name, request, carried.headers))


def _admit_bound(
    request: h11.Request, carried: auth.Carried, book: RecipientBook, bound: str
) -> Decision:
    """A request on a connection the preamble already admitted as ``bound``.

    A token it carries as well is removed and not looked at: the connection is the recipient's,
    and answering on a second token would make it an oracle for guesses. A link parameter is cut
    out of the target instead of being answered with a redirect, since nothing here keeps a
    cookie.
    """
    if all(recipient.name != bound for recipient in book.current()):
        return Refuse(*refusal(True), UNAUTHORIZED)
    if carried.link_tokens:
        request = h11.Request(
            method=request.method,
            target=carried.location,
            headers=request.headers.raw_items(),
            http_version=request.http_version,
        )
    return _checked(Admit(bound, request, carried.headers))


def _checked(admitted: Admit) -> Decision:
    # The method too: h11 takes a token's characters there, and only a connection's first
    # request line is held to upper-case letters before it is parsed.
    request = admitted.request
    if leaks.holds_token(request.target, admitted.headers) or leaks.holds_token(request.method, ()):
        return Refuse("bad-request", True, BAD_REQUEST)
    return admitted


def link_reply(
    server: h11.Connection, location: bytes, cookie: bytes, secret: bytes, max_age: float
) -> bytes:
    """The 303 that trades a link token for this share's cookie, as ``server`` writes it."""
    headers = auth.link_reply_headers(location, cookie, secret, max_age)
    reply = server.send(h11.Response(status_code=303, reason=b"See Other", headers=headers))
    return reply + server.send(h11.EndOfMessage())
