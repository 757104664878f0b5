"""The ``--token-file``: written when a share starts, removed when it ends.

A token left on disk after its share ended opens nothing, but it is still a secret that a backup,
a sync tool or a later reader may pick up, so the file lives only as long as the share unless the
user asked to keep it. Its removal is one of the resources the share's :class:`ExitStack` holds,
and that stack moves to the tunnel, so every way a share ends (TTL, kill, signal, SSH loss, an
error after start) runs it, on the single teardown path.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType

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
    written = _identity(path)

    def remove(
        exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc_type is not None or not keep:
            _remove_if_unchanged(path, written)
        return False  # never swallow the failure

    stack.push(remove)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _remove_if_unchanged(path: Path, written: tuple[int, int] | None) -> None:
    """Remove the file this share wrote; a file the user put in its place since is theirs."""
    if written is None or _identity(path) != written:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:  # teardown goes on: the share is over either way
        log.warning("could not remove the token file %s: %s", path, err.strerror)
