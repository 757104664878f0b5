"""Private files and directories, written atomically.

Every file safetunnel writes (records, audit log, config, its own known_hosts, token files) goes
through here, so the rules live in one place: directories 0700 and files 0600, created with that
mode (a chmod afterwards leaves a window where others can read), owner and mode checked, and
atomic replacement (a crash never leaves half a file).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from safetunnel.errors import StateError

DIR_MODE = 0o700
FILE_MODE = 0o600


def check_private_dir(path: Path) -> None:
    """Refuse a directory owned by someone else or writable by group or others."""
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise StateError(
            f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})",
            hint="Use a directory of your own (set SAFETUNNEL_STATE_DIR / SAFETUNNEL_CONFIG_DIR).",
        )
    if st.st_mode & 0o022:
        raise StateError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):03o})",
            hint=f"Run `chmod 700 {path}` or point safetunnel at a private directory.",
        )


def tighten_dir(path: Path) -> None:
    """Make a directory of ours that others may only read or enter 0700: other local users have
    no business listing tunnel ids or log names. Others' directories, and ones others can write
    (refused by :func:`check_private_dir`, with the fix in the hint), are left as they are."""
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077 and not st.st_mode & 0o022:
        os.chmod(path, DIR_MODE)


def _refuse_untrusted(path: Path, st: os.stat_result) -> None:
    if st.st_uid != os.getuid():
        raise StateError(
            f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); not trusted",
            hint=f"Run `chown {os.getuid()} {path}` if it is yours, or remove it.",
        )
    if st.st_mode & 0o022:
        raise StateError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):03o}); "
            "anyone could have changed it, so it is not trusted",
            hint=f"Run `chmod go-w {path}` after checking its content.",
        )


def read_trusted(path: Path) -> bytes:
    """The content of a file safetunnel trusts (config.toml, its own known_hosts, a record),
    refused when someone else could have written it, or its directory: as OpenSSH's
    StrictModes does. The checks are made on the opened file, so it cannot be swapped between
    check and read. FileNotFoundError when it does not exist."""
    use_private_dir(path.parent)
    # O_NONBLOCK: opening a FIFO for reading would wait for a writer that never comes.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateError(
                f"{path} is not a regular file, so it is not trusted",
                hint="Replace it with a regular file, or remove it.",
            )
        _refuse_untrusted(path, st)
        return handle.read()


def read_regular(path: Path, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of ``path``, or None when it is not a regular file. A symlink is
    not followed: os.open's OSError (ELOOP) says so, as it says FileNotFoundError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return handle.read(limit)


def use_private_dir(path: Path) -> None:
    """Check an existing directory before trusting what is in it, tightening it first."""
    tighten_dir(path)
    check_private_dir(path)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, then tighten and check it."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent process created it first
            directory.mkdir(mode=DIR_MODE)
    use_private_dir(path)
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file 0600 in the same directory, fsync, rename.

    Readers see either the old content or the new one, never a torn file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def create_exclusive(path: Path, data: bytes) -> None:
    """Create a new 0600 file; refuse to overwrite or follow a symlink (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` on an O_APPEND 0600 file.

    One write per line keeps concurrent appenders from interleaving within a line.
    """
    append_text(path, line.rstrip("\n") + "\n")


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (whole lines) with a single ``write`` on an O_APPEND 0600 file."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
