"""The ``--token-file``: written when a share starts, removed when it ends.

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
import stat
from pathlib import Path
from types import TracebackType

from safetunnel import tokens
from safetunnel.errors import ConfigError
from safetunnel.fsutil import create_exclusive

log = logging.getLogger("safetunnel.sharing.tokenfile")


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


def _remove_if_unchanged(path: Path, written: bytes) -> None:
    """Remove the file if it still is this share's: a file the user put in its place is theirs.

    The test is the content, not the inode: a file made after ours was deleted may reuse its
    inode number, and even its timestamps on a coarse-grained file system.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            ours = stat.S_ISREG(os.fstat(fd).st_mode) and tokens.verify(handle.read(64), written)
        if ours:
            path.unlink()
    except FileNotFoundError:
        return  # already gone: nothing of ours is left to remove
    except OSError as err:
        if err.errno != errno.ELOOP:  # ELOOP: a symlink now, not the file this share wrote
            # Teardown goes on: the share is over either way.
            log.warning("could not remove the token file %s: %s", path, err.strerror)
