"""The raw-TCP preamble: ``SAFETUNNEL <token>\\n`` before any byte reaches the service."""

from __future__ import annotations

from dataclasses import dataclass

from safetunnel.gate.recipients import Recipient, match
from safetunnel.gate.sniff import MAGIC


@dataclass(frozen=True)
class Preamble:
    """Outcome of a complete preamble: whose token it carried (None: nobody's), and where
    forwarding starts."""

    recipient: str | None
    rest_offset: int
    revoked: bool = False  # the token was a recipient's until it was revoked

    @property
    def valid(self) -> bool:
        return self.recipient is not None


class PreambleTooLong(Exception):
    """No newline within the allowed preamble length."""


def parse_preamble(
    buf: bytes | bytearray,
    recipients: tuple[Recipient, ...],
    max_bytes: int,
    revoked: tuple[Recipient, ...] = (),
) -> Preamble | None:
    """Check the preamble at the start of ``buf``; ``None`` while the newline has not arrived.

    The newline must fall within the first ``max_bytes`` bytes. An optional CR before it is
    tolerated so that line-oriented tools (telnet, some netcats) work.
    """
    newline = buf.find(b"\n", 0, max_bytes)
    if newline < 0:
        if len(buf) >= max_bytes:
            raise PreambleTooLong
        return None
    line = bytes(buf[len(MAGIC) : newline])
    if line.endswith(b"\r"):
        line = line[:-1]
    # No early exit on shape: every candidate goes through the constant-time comparison.
    shaped = buf[: len(MAGIC)] == MAGIC
    name = match([line], recipients, cookie=False)
    gone = shaped and name is None and match([line], revoked, cookie=False) is not None
    return Preamble(name if shaped else None, rest_offset=newline + 1, revoked=gone)
