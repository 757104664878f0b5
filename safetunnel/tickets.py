"""Tickets: everything a recipient needs to reach a share, as one copy-pasteable string. Pure.

A ticket is ``stt1_`` followed by the URL-safe base64 (no padding) of a compact JSON object:

=====  ==========================================================================
``h``  the SSH host as the sharer named it: ``[user@]host`` or an ssh_config alias
``p``  its SSH port; absent when the recipient's ssh_config (or 22) decides
``k``  the host key's ``SHA256:`` fingerprint: the trust anchor, no other is asked
``t``  the host key's type (``ssh-ed25519``...), so the same key is asked for
``b``  the share's bind address on the SSH host, ``r`` its port
``m``  the share's protocol (auto, http, tcp)
``e``  when the share expires, ISO-8601 UTC ending in ``Z``
``s``  the access token
``l``  the TLS public-key pin (``sha256//<base64>``), for shares that serve TLS
=====  ==========================================================================

The token is inside, so a ticket is a secret exactly like the token. Decoding is strict: a wrong
prefix, an unknown key, a missing one or a value of the wrong shape is refused, so a damaged
paste fails here with a clear message instead of somewhere on the network.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from safetunnel import jsontext, tokens
from safetunnel.errors import UsageError
from safetunnel.timefmt import iso_z, parse_iso_z

VERSION = 1
PREFIX = f"stt{VERSION}_"
MAX_LENGTH = 2048  # a real ticket is ~350 characters; anything far longer is not one
PROTOCOLS = ("auto", "http", "tcp")
TICKET_RE = re.compile(r"stt[0-9]+_[A-Za-z0-9_-]+")

_VERSIONED = re.compile(r"stt(?P<version>[0-9]+)_")
_BODY = re.compile(r"[A-Za-z0-9_-]+")
# Conservative like the SSH target parser: no spaces, quotes or a leading dash, so the name can
# never become an option of anything it is handed to.
_HOST = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@:+\[\]-]{0,252}")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_KEY_TYPE = re.compile(r"[a-z0-9][a-z0-9@.-]{0,63}")
_TLS_PIN = re.compile(r"sha256//[A-Za-z0-9+/]{43}=")
_KEYS = {"h", "p", "k", "t", "b", "r", "m", "e", "s", "l"}
_REQUIRED = {"h", "k", "b", "r", "m", "e", "s"}
_HINT = "Copy the whole ticket again from the sharer's output (it starts with stt1_)."


class TicketError(UsageError):
    """Not a ticket this safetunnel can read: exit 2, retrying the same string cannot help."""

    default_hint = _HINT


class TicketExpired(UsageError):
    """The share a ticket names is over. Exit 2 like a malformed one: the same ticket can never
    work again, so a script must not retry it."""

    default_hint = "Ask the sharer for a new ticket."


@dataclass(frozen=True)
class Ticket:
    """A decoded ticket. ``repr`` leaves the token out, so a stray log line cannot show it."""

    ssh_host: str
    ssh_port: int | None
    host_key: str
    key_type: str
    remote_bind: str
    remote_port: int
    protocol: str
    expires_at: datetime
    token: str = field(repr=False)
    tls_pin: str | None = None

    def encode(self) -> str:
        """The ticket string; raises ValueError for a value :func:`decode` would refuse."""
        data: dict[str, Any] = {"h": self.ssh_host, "p": self.ssh_port, "k": self.host_key}
        data |= {"t": self.key_type or None, "b": self.remote_bind, "r": self.remote_port}
        data |= {"m": self.protocol, "e": iso_z(self.expires_at), "s": self.token}
        data["l"] = self.tls_pin
        compact = {key: value for key, value in data.items() if value is not None}
        raw = json.dumps(compact, separators=(",", ":")).encode("utf-8")
        text = PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        try:
            decode(text)
        except TicketError as err:
            raise ValueError(f"cannot make a ticket: {err.message}") from None
        return text

    def check_fresh(self, now: datetime) -> None:
        """TicketExpired once the share it names has ended (by its expiry; it may end sooner)."""
        if now >= self.expires_at:
            raise TicketExpired(
                f"this ticket expired at {iso_z(self.expires_at)}: the share it was made for "
                "has ended"
            )


def decode(text: str) -> Ticket:
    """The ticket in ``text`` (surrounding whitespace ignored); TicketError when it is none."""
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise TicketError("this is not a safetunnel ticket (far too long)")
    versioned = _VERSIONED.match(text)
    if versioned is None:
        raise TicketError("this is not a safetunnel ticket (it must start with stt1_)")
    if versioned.group("version") != str(VERSION):
        raise TicketError(
            f"this ticket has version {versioned.group('version')}, which this safetunnel "
            f"cannot read (it reads version {VERSION})",
            hint="Use the same safetunnel version as the sharer, or ask for a new ticket.",
        )
    return _from_json(_unpack(text[len(PREFIX) :]))


def _unpack(body: str) -> dict[str, Any]:
    if not _BODY.fullmatch(body):
        raise TicketError("the ticket is damaged (characters that a ticket never holds)")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        data = jsontext.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError included
        raise TicketError("the ticket is damaged (it does not decode)") from None
    if not isinstance(data, dict):
        raise TicketError("the ticket is damaged (no fields inside)")
    unknown, missing = set(data) - _KEYS, _REQUIRED - set(data)
    if unknown or missing:
        raise TicketError("the ticket is damaged (fields are missing or unknown)")
    return data


def _from_json(data: dict[str, Any]) -> Ticket:
    return Ticket(
        ssh_host=_text(data, "h", _HOST, "SSH host"),
        ssh_port=None if "p" not in data else _port(data["p"], "SSH port"),
        host_key=_text(data, "k", _FINGERPRINT, "host-key fingerprint"),
        key_type=_text(data, "t", _KEY_TYPE, "host-key type") if "t" in data else "",
        remote_bind=_bind(data["b"]),
        remote_port=_port(data["r"], "share port"),
        protocol=_choice(data["m"]),
        expires_at=_expiry(data["e"]),
        token=_token(data["s"]),
        tls_pin=_text(data, "l", _TLS_PIN, "TLS pin") if "l" in data else None,
    )


def _bad(what: str) -> TicketError:
    # Never the value itself: it may be (part of) the token.
    return TicketError(f"the ticket is damaged (its {what} is not valid)")


def _text(data: dict[str, Any], key: str, shape: re.Pattern[str], what: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not shape.fullmatch(value):
        raise _bad(what)
    return value


def _port(value: Any, what: str) -> int:
    if type(value) is not int or not 0 < value < 65536:
        raise _bad(what)
    return value


def _bind(value: Any) -> str:
    try:
        if not isinstance(value, str):  # ip_address() would take 2130706433 for 127.0.0.1
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _bad("share address") from None


def _choice(value: Any) -> str:
    if value not in PROTOCOLS:
        raise _bad("protocol")
    return str(value)


def _expiry(value: Any) -> datetime:
    try:
        return parse_iso_z(value)
    except (TypeError, ValueError):
        raise _bad("expiry") from None


def _token(value: Any) -> str:
    if not isinstance(value, str) or not tokens.looks_like_token(value):
        raise _bad("token")
    return value
