"""Shared fixtures: an isolated user (sandbox + test keyring), the e2e harness (tests/e2e.py), a
real OpenSSH sshd (tests/sshd.py: one per module, or a fresh one per test through the factory)
and the built-in gateway.

Everything here is safe under pytest-xdist: ports are picked by the kernel (or probed and
retried for sshd), dirs come from tmp_path, and environment variables are set per test with
monkeypatch in the worker process that runs it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest
from sshd import SSHD, SSHDFactory, make_keys, start_sshd

from safetunnel.sharing.connections import builtin_gateway_limits
from safetunnel.sharing.options import DEFAULT_MAX_CONNECTIONS
from safetunnel.ssh.gateway import Gateway, start_builtin

if TYPE_CHECKING:
    from e2e import E2E

KEYRING_BACKENDS_DIR = Path(__file__).parent / "keyring_backends"
# Importable in-process too (tests construct these backends directly).
sys.path.insert(0, str(KEYRING_BACKENDS_DIR))


@dataclass
class Sandbox:
    """Private HOME/config/state dirs and the file test keyring, plus the env that selects them."""

    home: Path
    config_dir: Path
    state_dir: Path
    keyring_file: Path
    env: dict[str, str]

    def use_backend(self, name: str) -> None:
        """Select st_test_keyrings.<name> for subprocesses (and in-process keyring loads)."""
        self.env["PYTHON_KEYRING_BACKEND"] = f"st_test_keyrings.{name}"

    @property
    def dirs(self) -> list[Path]:
        return [self.home, self.config_dir, self.state_dir]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """An isolated user: HOME, SAFETUNNEL_CONFIG_DIR and SAFETUNNEL_STATE_DIR in tmp.

    How keyring is pointed at the test backend, exactly: keyring loads the class named by
    PYTHON_KEYRING_BACKEND ("module.Class") with a plain import, so tests/keyring_backends goes on
    PYTHONPATH and PYTHON_KEYRING_BACKEND=st_test_keyrings.FileKeyring; that backend keeps its
    secrets in the JSON file named by SAFETUNNEL_TEST_KEYRING_FILE, locked with flock, so the test
    process and the console-script subprocesses see the same keyring. `sandbox.env` is a full
    environment for subprocess.run(env=...); the same variables are set in this process.
    """
    home = tmp_path / "home"
    home.mkdir()
    sandbox = Sandbox(
        home=home,
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
        keyring_file=tmp_path / "keyring.json",
        env={},
    )
    pythonpath = os.pathsep.join(
        filter(None, [str(KEYRING_BACKENDS_DIR), os.environ.get("PYTHONPATH")])
    )
    overrides = {
        "HOME": str(home),
        "SAFETUNNEL_CONFIG_DIR": str(sandbox.config_dir),
        "SAFETUNNEL_STATE_DIR": str(sandbox.state_dir),
        "SAFETUNNEL_TEST_KEYRING_FILE": str(sandbox.keyring_file),
        "PYTHON_KEYRING_BACKEND": "st_test_keyrings.FileKeyring",
        "PYTHONPATH": pythonpath,
        "SAFETUNNEL_KEYRING_TIMEOUT": "5",
    }
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SAFETUNNEL_HOST", raising=False)
    sandbox.env = {**os.environ, **overrides}
    sandbox.env.pop("SAFETUNNEL_HOST", None)
    yield sandbox
    # Let any HangingKeyring worker thread of this process finish.
    import st_test_keyrings

    st_test_keyrings.RELEASE_HANGING.set()
    st_test_keyrings.RELEASE_HANGING.clear()


@pytest.fixture(scope="session")
def sshd_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sshd host key and client key pair, generated once and copied into every daemon."""
    return make_keys(tmp_path_factory.mktemp("sshd-keys"))


@pytest.fixture
def sshd_factory(
    tmp_path_factory: pytest.TempPathFactory, sshd_key_dir: Path
) -> Iterator[SSHDFactory]:
    """Start sshd variants: ``sshd_factory(gateway_ports=True, authorized_options="restrict,...")``.

    Every daemon started through the factory is stopped at teardown, even when the test failed.
    """
    started: list[SSHD] = []

    def make(**options: object) -> SSHD:
        workdir: Path = tmp_path_factory.mktemp("sshd")
        options.setdefault("key_dir", sshd_key_dir)
        server = start_sshd(workdir, **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sshd(sshd_factory: SSHDFactory) -> SSHD:
    """A default sshd of this test alone (GatewayPorts no, unrestricted client key, LogLevel
    DEBUG1): for tests that stop or freeze it, change its keys, or read its whole log."""
    return sshd_factory()


@pytest.fixture(scope="module")
def shared_sshd(tmp_path_factory: pytest.TempPathFactory, sshd_key_dir: Path) -> Iterator[SSHD]:
    """The default sshd, shared by the tests of one module that only connect and forward
    through it. Its log holds every one of those tests' sessions; a test that reads the log for
    what did *not* happen, or stops or changes the daemon, takes ``sshd`` instead."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), key_dir=sshd_key_dir)
    yield server
    server.stop()


@pytest.fixture(params=["sshd", "builtin"])
def via(request: pytest.FixtureRequest) -> SSHD | None:
    """Where the share goes: the real OpenSSH sshd, or (None) the built-in loopback gateway.

    Tests taking ``via`` run twice, once each way (``e2e.share(port, via=via)``).
    """
    if request.param == "sshd":
        server: SSHD = request.getfixturevalue("shared_sshd")
        return server
    return None


@pytest.fixture
def builtin_gateway() -> Iterator[tuple[Gateway, paramiko.PKey]]:
    """The in-process gateway on 127.0.0.1:0 and its client key; closed at teardown.

    Connect with ``open_session(SSHTarget(*gateway.address), hostkeys=None, on_unknown_key=None,
    auth=None, client_key=key, expected_key=gateway.host_key)``.
    """
    gateway, client_key = start_builtin(limits=builtin_gateway_limits(DEFAULT_MAX_CONNECTIONS))
    try:
        yield gateway, client_key
    finally:
        gateway.close()


@pytest.fixture
def e2e(sandbox: Sandbox) -> Iterator[E2E]:
    """The end-to-end harness (tests/e2e.py): shares, commands and services for one sandboxed
    user; afterwards no process, no record and no token where it is not shown on purpose."""
    from e2e import E2E

    runner = E2E(sandbox)
    yield runner
    runner.finish()
