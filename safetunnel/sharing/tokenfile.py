"""The ``--token-file`` and its ticket file: written when a share starts, removed when it ends.

A token left on disk after its share ended opens nothing, but it is still a secret that a backup,
a sync tool or a later reader may pick up, so the file lives only as long as the share unless the
user asked to keep it. Its removal is one of the resources the share's :class:`ExitStack` holds,
and that stack moves to the tunnel, so every way a share ends (TTL, kill, signal, SSH loss, an
error after start) runs it, on the single teardown path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from safetunnel import tokens
from safetunnel.errors import ConfigError
from safetunnel.fsutil import create_exclusive, read_regular
from safetunnel.sharing.events import TunnelEvent

if TYPE_CHECKING:
    from safetunnel.sharing.tunnel import Tunnel

log = logging.getLogger("safetunnel.sharing.tokenfile")

TICKET_SUFFIX = ".ticket"


def write_token_file(stack: contextlib.ExitStack, path: Path, token: str, *, keep: bool) -> None:
    """Create ``path`` (0600, never overwriting) and put its removal on ``stack``.

    With ``keep`` the file outlives a share that ran, but not one that failed to start: that
    token never opened anything.
    """
    try:
        create_exclusive(path, (token + "\n").encode())
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; a token file is never overwritten",
            hint="Choose a new path for --token-file.",
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot create token file {path}: {err.strerror}") from None
    written = tokens.hash_token(token + "\n")

    def remove(
        exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc_type is not None or not keep:
            _remove_if_unchanged(path, written)
        return False  # never swallow the failure

    stack.push(remove)


def ticket_path(token_file: Path) -> Path:
    """Where the ticket goes when the token goes to ``token_file``: beside it, same name."""
    return token_file.with_name(token_file.name + TICKET_SUFFIX)


class TicketFile:
    """The ticket of a share whose token is in a file: it is a secret like the token, so it is
    written next to it (0600, never overwriting) instead of being shown, and removed with it.

    The ticket names the remote port, so it is written only once the forward is up, as the
    tunnel's observer; its removal goes on the share's stack at once, like the token file's, and
    a share that ends before it was written leaves nothing. Shares that have no ticket (the
    built-in gateway) write no file.
    """

    def __init__(self, stack: contextlib.ExitStack, path: Path, *, keep: bool) -> None:
        if os.path.lexists(path):
            raise ConfigError(
                f"{path} already exists; a ticket file is never overwritten",
                hint="Choose a new path for --token-file (the ticket goes next to it).",
            )
        self.path = path
        self._keep = keep
        self._lock = threading.Lock()
        self._ended = False
        self._written: bytes | None = None
        stack.push(self._remove)

    def started(self, tunnel: Tunnel) -> None:
        ticket = tunnel.config.ticket(tunnel.remote_port, tunnel.token, tunnel.expires_at)
        if ticket is None:
            return
        data = (ticket + "\n").encode()
        with self._lock:
            if self._ended:
                return  # the share is already over: nothing to hand out
            try:
                create_exclusive(self.path, data)
            except OSError as err:
                raise ConfigError(
                    f"cannot create ticket file {self.path}: {err.strerror}"
                ) from None
            self._written = tokens.hash_token(data)

    def event(self, event: TunnelEvent) -> None:
        return None

    def close(self) -> None:
        return None

    def _remove(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        with self._lock:
            self._ended = True
            written = self._written
        if written is not None and (exc_type is not None or not self._keep):
            _remove_if_unchanged(self.path, written)
        return False


def _remove_if_unchanged(path: Path, written: bytes) -> None:
    """Remove the file if it still is this share's: a file the user put in its place is theirs.

    The test is the content, not the inode: a file made after ours was deleted may reuse its
    inode number, and even its timestamps on a coarse-grained file system.
    """
    try:
        content = read_regular(path, tokens.FILE_MAX_BYTES)
        if content is not None and tokens.verify(content, written):
            path.unlink()
    except FileNotFoundError:
        return  # already gone: nothing of ours is left to remove
    except OSError as err:
        if err.errno != errno.ELOOP:  # ELOOP: a symlink now, not the file this share wrote
            # Teardown goes on: the share is over either way.
            log.warning("could not remove the token file %s: %s", path, err.strerror)
