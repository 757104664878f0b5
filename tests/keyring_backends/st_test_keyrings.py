"""Keyring backends for safetunnel's tests only. Never the user's real keyring.

Selected the way keyring itself selects backends, so that subprocesses (the real console script)
share them:

    PYTHONPATH=<repo>/tests/keyring_backends
    PYTHON_KEYRING_BACKEND=st_test_keyrings.FileKeyring      # or PlaintextKeyring, HangingKeyring
    SAFETUNNEL_TEST_KEYRING_FILE=<tmp>/keyring.json

Every backend here is "not viable" (its priority raises) unless SAFETUNNEL_TEST_KEYRING_FILE is
set, so merely importing this module can never make keyring's auto-detection pick it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

ENV = "SAFETUNNEL_TEST_KEYRING_FILE"


def _store_path() -> Path:
    value = os.environ.get(ENV)
    if not value:
        raise RuntimeError(f"{ENV} is not set; the test keyrings are for tests only")
    return Path(value)


class FileKeyring(KeyringBackend):
    """A JSON file of {"service\\0username": secret}, shared safely by several processes.

    It is a real-enough keyring for safetunnel's vetting: priority 1 and no plaintext marker in
    its name (vetting looks for "plaintext", not "file"; see safetunnel.secrets.keystore).
    """

    @properties.classproperty
    def priority(cls) -> float:
        _store_path()
        return 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        path = _store_path()
        # One lock file for read-modify-write across processes; the data file is replaced
        # atomically so a reader never sees half a file.
        with open(f"{path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(path.read_text()) if path.exists() else {}
                before = dict(data)
                yield data
                if data != before:
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as handle:
                        json.dump(data, handle)
                    os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get_password(self, service: str, username: str) -> str | None:
        with self._locked() as data:
            return data.get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._locked() as data:
            data[f"{service}\0{username}"] = password

    def delete_password(self, service: str, username: str) -> None:
        with self._locked() as data:
            if data.pop(f"{service}\0{username}", None) is None:
                raise PasswordDeleteError("no such password")


class PlaintextKeyring(FileKeyring):
    """Same file, but flagged plaintext by name (like keyrings.alt's): vetting must refuse it
    even though its priority (1) would pass."""


# Released by tests at teardown so the stuck worker thread ends instead of lingering.
RELEASE_HANGING = threading.Event()


class HangingKeyring(FileKeyring):
    """A locked Secret Service: every call blocks (until RELEASE_HANGING, i.e. forever in a CLI)."""

    def get_password(self, service: str, username: str) -> str | None:
        RELEASE_HANGING.wait()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        RELEASE_HANGING.wait()

    def delete_password(self, service: str, username: str) -> None:
        RELEASE_HANGING.wait()
