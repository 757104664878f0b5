"""The test keyring (tests/keyring_backends) passes keyring's own backend test suite, so the
secrets tests stand on a backend that behaves like a real keyring: set, get, blank and difficult
values, unicode, delete, and errors on deleting what is not there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import st_test_keyrings
from keyring.testing.backend import BackendBasicTests


@pytest.fixture(scope="class", autouse=True)
def keyring_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Class-scoped, so the store outlives the suite's per-test clean-up of what it created."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("keyring") / "keyring.json"
        patch.setenv(st_test_keyrings.ENV, str(path))
        yield


class TestFileKeyring(BackendBasicTests):
    def init_keyring(self) -> st_test_keyrings.FileKeyring:
        return st_test_keyrings.FileKeyring()
