"""Keyring secret names: the auth chain hands back on rejection the very name the keystore uses.

The built-in gateway (in this process, password auth) listens on ``::1`` so the IPv6 spelling is
exercised for real: the keyring username brackets the address so the port stays readable, and a
rejection reported under any other spelling would not match the stored entry.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import st_test_keyrings
from conftest import Sandbox

from safetunnel.errors import AuthFailed
from safetunnel.secrets.credentials import KeyringAuthSource, KeyringStore
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.client import open_session
from safetunnel.ssh.gateway import Gateway
from safetunnel.ssh.target import SSHTarget

USER = "tester"
PASSWORD = "the right one"


class Recording(KeyringAuthSource):
    """The real keyring source, remembering what the chain reported as rejected."""

    def __init__(self, store: KeyringStore, notes: list[str]) -> None:
        super().__init__(store, notify=notes.append)
        self.reported: list[SecretName] = []

    def rejected(self, name: SecretName) -> None:
        self.reported.append(name)
        super().rejected(name)


@pytest.fixture
def v6_gateway() -> Iterator[Gateway]:
    with Gateway(listen=("::1", 0), passwords={USER: PASSWORD}) as gateway:
        gateway.start()
        yield gateway


def test_rejected_stored_password_on_ipv6_host_names_the_stored_entry(
    sandbox: Sandbox, v6_gateway: Gateway
) -> None:
    port = v6_gateway.address[1]
    stored_as = SecretName.password(USER, "::1", port)
    assert stored_as.username == f"password:{USER}@[::1]:{port}"
    store = KeyringStore(st_test_keyrings.FileKeyring())
    store.set(stored_as, "a stale password")
    notes: list[str] = []
    source = Recording(store, notes)
    target = SSHTarget("::1", port, USER)
    with pytest.raises(AuthFailed, match="password"):
        open_session(
            target,
            hostkeys=None,
            on_unknown_key=None,
            auth=source,
            expected_key=v6_gateway.host_key,
            timeout=5.0,
        )
    assert source.reported == [stored_as]
    assert notes == [f"The stored password for {USER}@[::1]:{port} was rejected."]


def test_rejection_marks_exactly_the_named_secret(sandbox: Sandbox) -> None:
    """Two passwords in play: a rejection names one of them and only that one is dropped."""
    store = KeyringStore(st_test_keyrings.FileKeyring())
    v6, v4 = SecretName.password(USER, "::1", 2222), SecretName.password(USER, "10.0.0.1", 22)
    store.set(v6, "stale")
    store.set(v4, "fine")
    notes: list[str] = []
    source = KeyringAuthSource(store, notify=notes.append)
    assert source.password(SSHTarget("::1", 2222, USER)) == "stale"
    assert source.password(SSHTarget("10.0.0.1", 22, USER)) == "fine"
    source.rejected(v6)
    assert notes == [f"The stored password for {USER}@[::1]:2222 was rejected."]
    assert source.password(SSHTarget("::1", 2222, USER)) is None
    assert source.password(SSHTarget("10.0.0.1", 22, USER)) == "fine"


def test_secret_names_are_values() -> None:
    assert SecretName.password("u", "::1", 22) == SecretName.password("u", "::1", 22)
    assert SecretName.password("u", "[::1]", 22).username == "password:u@[::1]:22"
    assert SecretName.passphrase("/k").username == "passphrase:/k"
    assert len({SecretName.password("u", "h", 22), SecretName.passphrase("/h")}) == 2
