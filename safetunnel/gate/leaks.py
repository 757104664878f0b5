"""The last check before a request head is forwarded: no token-looking value in any form.

The known carriers are stripped by name (auth.py), but a client can put the token anywhere else
next to a valid carrier: a cookie name in another case, a ``;``-separated query, a header the
application reads, percent-encoded, inside Basic credentials. Any of those could reach the
application, its logs or a third party, so a head that still holds something shaped like a token
is refused instead: the names are open-ended, the shape of a token is not.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

_TOKEN = re.compile(rb"st_[A-Za-z0-9_-]{43}")
# Percent-decoding is applied this many times: a service that decodes twice is already odd.
_DECODE_ROUNDS = 3


def holds_token(target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the target or a header (name or value) holds a token-shaped value."""
    if _in_target(target):
        return True
    for name, value in headers:
        # _in_target searches the value as it is first, then decoded.
        if _TOKEN.search(name) or _in_target(value):
            return True
        if name.lower() == b"authorization" and _TOKEN.search(_basic_credentials(value)):
            return True
    return False


def _in_target(target: bytes) -> bool:
    for _ in range(_DECODE_ROUNDS + 1):
        if _TOKEN.search(target):
            return True
        decoded = unquote_to_bytes(target)
        if decoded == target:
            return False
        target = decoded
    return False


def _basic_credentials(value: bytes) -> bytes:
    scheme, _, credentials = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return b""
    try:
        return base64.b64decode(credentials.strip() + b"==", validate=False)
    except (binascii.Error, ValueError):
        return b""
