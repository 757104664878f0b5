from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from safetunnel.errors import HostKeyChanged
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.keys import generate_ed25519


def _line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture
def keys() -> dict[str, paramiko.PKey]:
    return {
        "ed": generate_ed25519(),
        "ed2": generate_ed25519(),
        "ecdsa": paramiko.ECDSAKey.generate(),
    }


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key_path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_path)], check=True)
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key_path)], check=True, capture_output=True, text=True
    ).stdout
    key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    assert fingerprint(key) == out.split()[1]
    assert "=" not in fingerprint(key)
    digest = hashlib.sha256(key.asbytes()).digest()
    assert base64.b64decode(fingerprint(key)[7:] + "=") == digest


def test_known_unknown_and_port_brackets(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(_line("bastion,10.0.0.1", keys["ed"]) + _line("[gw]:2222", keys["ecdsa"]))
    store = HostKeyStore(user, tmp_path / "own" / "known_hosts")
    assert store.check("bastion", 22, keys["ed"]) == "known"
    assert store.check("10.0.0.1", 22, keys["ed"]) == "known"
    assert store.check("gw", 2222, keys["ecdsa"]) == "known"
    assert store.check("gw", 22, keys["ecdsa"]) == "unknown"  # port 22 is a different entry
    assert store.check("other", 22, keys["ed"]) == "unknown"
    assert store.known_types("bastion", 22) == ("ssh-ed25519",)


def test_hashed_entries_from_ssh_keygen(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(_line("[hashed.example]:2200", keys["ed"]))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user)], check=True, capture_output=True)
    assert user.read_text().startswith("|1|")
    store = HostKeyStore(user, tmp_path / "own")
    assert store.check("hashed.example", 2200, keys["ed"]) == "known"
    with pytest.raises(HostKeyChanged):
        store.check("hashed.example", 2200, keys["ed2"])
    # Host names are case-insensitive and OpenSSH hashes the lowercased name: a capitalised
    # --host must still hit the pin, so a different key is "changed", never merely "unknown".
    assert store.check("Hashed.Example", 2200, keys["ed"]) == "known"
    with pytest.raises(HostKeyChanged):
        store.check("Hashed.Example", 2200, keys["ed2"])


def test_changed_key_same_type(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(_line("bastion", keys["ed"]))
    store = HostKeyStore(user, tmp_path / "own")
    with pytest.raises(HostKeyChanged) as info:
        store.check("bastion", 22, keys["ed2"])
    assert info.value.exit_code == 4
    assert fingerprint(keys["ed"]) in info.value.message
    assert fingerprint(keys["ed2"]) in info.value.message
    assert str(user) in info.value.message


def test_other_type_is_changed_too(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(_line("bastion", keys["ed"]))
    with pytest.raises(HostKeyChanged):
        HostKeyStore(user, tmp_path / "own").check("bastion", 22, keys["ecdsa"])


def test_revoked_key_refused(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(
        "@revoked * "
        + _line("", keys["ed"]).strip().lstrip()
        + "\n"
        + "@cert-authority *.corp "
        + _line("", keys["ed2"]).strip()
        + "\n"
    )
    with pytest.raises(HostKeyChanged, match="revoked"):
        HostKeyStore(user, tmp_path / "own").check("bastion", 22, keys["ed"])
    assert HostKeyStore(user, tmp_path / "own").check("x.corp", 22, keys["ed2"]) == "unknown"


def test_junk_lines_and_negation(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "known_hosts"
    user.write_text(
        "# comment\n\ngarbage\nhost ssh-ed25519 !!!notbase64\nhost ssh-foo AAAA\n"
        + _line("*.corp,!evil.corp", keys["ed"])
    )
    store = HostKeyStore(user, tmp_path / "own")
    assert store.check("db.corp", 22, keys["ed"]) == "known"
    assert store.check("evil.corp", 22, keys["ed2"]) == "unknown"


def test_pin_writes_only_own_file_private(tmp_path: Path, keys: dict[str, paramiko.PKey]) -> None:
    user = tmp_path / "user_known_hosts"
    user.write_text(_line("other", keys["ed2"]))
    before = user.read_bytes()
    own = tmp_path / "config" / "safetunnel" / "known_hosts"
    store = HostKeyStore(user, own)
    assert store.check("gw", 2222, keys["ed"]) == "unknown"
    store.pin("gw", 2222, keys["ed"])
    store.pin("plain", 22, keys["ecdsa"])
    assert store.check("gw", 2222, keys["ed"]) == "known"
    assert store.check("plain", 22, keys["ecdsa"]) == "known"
    assert user.read_bytes() == before
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert stat.S_IMODE(own.parent.stat().st_mode) == 0o700
    assert own.read_text().splitlines()[0].startswith("[gw]:2222 ssh-ed25519 ")
    # the own file is an ordinary known_hosts: OpenSSH reads it too
    out = subprocess.run(
        ["ssh-keygen", "-F", "[gw]:2222", "-f", str(own)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0


def test_default_user_file_is_home_known_hosts(tmp_path: Path) -> None:
    store = HostKeyStore(None, tmp_path / "own")
    assert store.user_known_hosts == Path.home() / ".ssh" / "known_hosts"
