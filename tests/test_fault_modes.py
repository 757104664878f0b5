"""StrictModes for what safetunnel reads and trusts: config.toml, its own known_hosts, records.

A file (or its directory) that another local user could have written is refused with the chmod
that fixes it: a planted ``default_host`` or host-key pin would otherwise be used silently. A
directory of ours that others may only read is tightened to 0700 instead (tunnel ids and log
names are nobody else's business). Root ignores modes when writing, but these are checks of the
modes themselves, so they hold under root too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Sandbox
from e2e import run_cli

from safetunnel.errors import StateError
from safetunnel.hosts.config import load_config
from safetunnel.registry import records as reg
from safetunnel.ssh.hostkeys import HostKeyStore

pytestmark = pytest.mark.fault


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def config_with_default_host(sandbox: Sandbox) -> Path:
    sandbox.config_dir.mkdir(mode=0o700)
    path = sandbox.config_dir / "config.toml"
    path.write_text('default_host = "planted@evil.example"\n')
    path.chmod(0o600)
    return path


def test_a_world_writable_config_file_is_refused_with_the_fix(sandbox: Sandbox) -> None:
    path = config_with_default_host(sandbox)
    assert load_config().default_host == "planted@evil.example"  # private: trusted
    path.chmod(0o666)
    with pytest.raises(StateError) as caught:
        load_config()
    assert "writable by group or others (mode 666)" in caught.value.message
    assert caught.value.hint == f"Run `chmod go-w {path}` after checking its content."
    out = run_cli("hosts", "list")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"Error: {path} is writable by group or others" in out.stderr
    assert f"hint: Run `chmod go-w {path}`" in out.stderr


def test_a_group_writable_config_dir_is_refused(sandbox: Sandbox) -> None:
    config_with_default_host(sandbox)
    sandbox.config_dir.chmod(0o777)
    with pytest.raises(StateError) as caught:
        load_config()
    assert f"{sandbox.config_dir} is writable by group or others" in caught.value.message
    assert caught.value.hint is not None and f"chmod 700 {sandbox.config_dir}" in caught.value.hint


def test_a_config_file_owned_by_another_user_is_refused(sandbox: Sandbox) -> None:
    path = config_with_default_host(sandbox)
    os.chown(path, 12345, -1)
    with pytest.raises(StateError, match="owned by uid 12345, not by you"):
        load_config()


def test_own_known_hosts_writable_by_others_is_not_trusted(sandbox: Sandbox) -> None:
    sandbox.config_dir.mkdir(mode=0o700)
    own = sandbox.config_dir / "known_hosts"
    own.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanted\n")
    own.chmod(0o666)
    store = HostKeyStore(sandbox.home / "none", own)
    with pytest.raises(StateError, match="writable by group or others"):
        store.known_types("127.0.0.1", 2222)
    own.chmod(0o600)
    assert store.known_types("127.0.0.1", 2222) == ("ssh-ed25519",)  # fixed: read again


def test_a_record_writable_by_others_is_refused(tmp_path: Path) -> None:
    registry = reg.Registry(tmp_path)
    path = registry.dir / "st-abcdef.json"
    path.write_text("{}")
    path.chmod(0o666)
    with pytest.raises(StateError, match="writable by group or others"):
        registry.get("st-abcdef")
    assert registry.load_all() == ([], 1, ())  # a forged record names no running tunnel


@pytest.mark.parametrize("which", ["state", "config"])
def test_a_dir_of_ours_readable_by_others_is_tightened_to_0700(
    sandbox: Sandbox, which: str
) -> None:
    directory = sandbox.state_dir if which == "state" else sandbox.config_dir
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    if which == "config":
        (directory / "config.toml").write_text('default_ttl = "10m"\n')
        (directory / "config.toml").chmod(0o600)
    argv = ["list"] if which == "state" else ["hosts", "list"]
    out = run_cli(*argv)
    assert out.returncode == 0, out.stderr
    assert mode(directory) == 0o700
