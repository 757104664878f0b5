"""What a share killed with -9 left on disk besides its record: its token and ticket files.

A share removes them itself as it ends; one that was killed outright cannot, so whoever prunes
its record removes them, but only a file that still holds that share's token (its hash prefix
is in the record): a file the user put in its place since is theirs. The token in it opens
nothing any more, but it is still a secret that a backup or a sync tool may pick up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from safetunnel import tickets, tokens
from safetunnel.fsutil import read_regular


def remove_token_files(paths: Iterable[str], token_hash_prefix: str) -> None:
    """Remove each of ``paths`` that holds the token (or a ticket of the token) with
    ``token_hash_prefix``; leave anything else, and say nothing of what cannot be removed."""
    for path in paths:
        token = _token_in(Path(path))
        if token is not None and tokens.hash_prefix(tokens.hash_token(token)) == token_hash_prefix:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _token_in(path: Path) -> str | None:
    """The token a token file or a ticket file holds; None for anything else (or no file)."""
    try:
        content = read_regular(path, tokens.FILE_MAX_BYTES)
    except OSError:
        return None
    if content is None:
        return None
    text = content.decode("utf-8", "replace").strip()
    if tokens.looks_like_token(text):
        return text
    try:
        return tickets.decode(text).token
    except tickets.TicketError:
        return None
