"""The raw-TCP preamble: ``SAFETUNNEL <token>\\n`` before any byte reaches the service."""

from __future__ import annotations

from dataclasses import dataclass

from safetunnel import tokens
from safetunnel.gate.sniff import MAGIC


@dataclass(frozen=True)
class Preamble:
    """Outcome of a complete preamble: whether the token matched, and where forwarding starts."""

    valid: bool
    rest_offset: int


class PreambleTooLong(Exception):
    """No newline within the allowed preamble length."""


def parse_preamble(buf: bytes | bytearray, token_hash: bytes, max_bytes: int) -> Preamble | None:
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
    valid = buf[: len(MAGIC)] == MAGIC and tokens.verify(line, token_hash)
    return Preamble(valid=valid, rest_offset=newline + 1)
