from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import st_test_keyrings
from conftest import Sandbox
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.compat import properties
from secrets_check import assert_secret_absent

from safetunnel.errors import CredentialError
from safetunnel.secrets.credentials import (
    KeyringAuthSource,
    KeyringStore,
    verify_passphrase,
    vet_backend,
)
from safetunnel.secrets.names import SecretName

PASSPHRASE = 'correct horse "battery" ✓'


def make_key(path: Path, passphrase: str | None) -> Path:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    data = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Target:
    user: str = "alice"
    hostname: str = "bastion.example"
    port: int = 2222


class LowPriority(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        return 0.5

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def test_secret_name_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(SecretName.password("alice", "bastion", 22)) == "password:alice@bastion:22"
    assert SecretName.password("a", "2001:db8::1", 22).username == "password:a@[2001:db8::1]:22"
    monkeypatch.chdir(tmp_path)
    assert SecretName.passphrase("k").username == f"passphrase:{tmp_path / 'k'}"
    assert SecretName.passphrase("k") == SecretName.passphrase(str(tmp_path / "k"))


@pytest.mark.parametrize(
    ("backend", "problem"),
    [
        (fail.Keyring(), "backend: fail.Keyring; it stores nothing"),
        (null.Keyring(), "backend: null.Keyring; it stores nothing"),
        (LowPriority(), "priority 0.5 is below 1"),
        (st_test_keyrings.PlaintextKeyring(), "PlaintextKeyring; it stores secrets unencrypted"),
    ],
)
def test_vetting_refuses(sandbox: Sandbox, backend: Any, problem: str) -> None:
    status = vet_backend(backend)
    assert not status.usable
    assert problem in (status.reason or "")
    assert "install a keyring backend such as Secret Service" in (status.reason or "")


def test_vetting_accepts_file_test_backend_and_checks_chainer(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vet_backend(st_test_keyrings.FileKeyring()).usable
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    assert "chains no usable" in (vet_backend(chainer.ChainerBackend()).reason or "")
    monkeypatch.setattr(
        chainer.ChainerBackend,
        "backends",
        [st_test_keyrings.PlaintextKeyring(), st_test_keyrings.FileKeyring()],
    )
    assert not vet_backend(chainer.ChainerBackend()).usable
    monkeypatch.delenv("SAFETUNNEL_TEST_KEYRING_FILE")  # the test backend is now "not viable"
    assert "not usable here" in (vet_backend(st_test_keyrings.FileKeyring()).reason or "")


def test_store_round_trip_in_shared_file(sandbox: Sandbox) -> None:
    store = KeyringStore(st_test_keyrings.FileKeyring())
    name = SecretName.password("a", "h", 22)
    store.set(name, "s3cret")
    # A second backend instance (as another process would have) sees it.
    assert KeyringStore(st_test_keyrings.FileKeyring()).get(name) == "s3cret"
    assert store.delete(name) is True
    assert store.delete(name) is False
    assert store.get(name) is None


def test_unloadable_backend_is_no_keyring() -> None:
    def loader() -> Any:
        raise ModuleNotFoundError("No module named 'nope'")

    status = KeyringStore(loader=loader).status()
    assert not status.usable and "nope" in (status.reason or "")


def test_hanging_backend_times_out_and_then_fails_fast(sandbox: Sandbox) -> None:
    store = KeyringStore(st_test_keyrings.HangingKeyring(), timeout=0.3)
    name = SecretName.password("a", "h", 22)
    with pytest.raises(CredentialError, match=r"did not answer within 0.3 s"):
        store.get(name)
    stuck = [t for t in threading.enumerate() if t.name == "safetunnel-keyring"]
    with pytest.raises(CredentialError, match="did not answer"):
        store.set(name, "x")
    # Failing fast means no second worker was started to block the same way.
    assert [t for t in threading.enumerate() if t.name == "safetunnel-keyring"] == stuck


def test_verify_passphrase_against_real_key(tmp_path: Path) -> None:
    key = make_key(tmp_path / "id", PASSPHRASE)
    assert verify_passphrase(str(key), PASSPHRASE) is True
    assert verify_passphrase(str(key), "wrong") is False
    plain = make_key(tmp_path / "plain", None)
    with pytest.raises(CredentialError, match="not encrypted"):
        verify_passphrase(str(plain), "anything")


# --- KeyringAuthSource ---


class Recorder:
    def __init__(self, answers: list[str | None] | None = None, confirm: bool = False) -> None:
        self.answers = list(answers or [])
        self.prompts: list[str] = []
        self.confirms: list[str] = []
        self.notes: list[str] = []
        self.confirm_answer = confirm

    def prompt(self, text: str) -> str | None:
        self.prompts.append(text)
        return self.answers.pop(0) if self.answers else None

    def confirm(self, text: str) -> bool:
        self.confirms.append(text)
        return self.confirm_answer

    def notify(self, text: str) -> None:
        self.notes.append(text)


def file_store() -> KeyringStore:
    return KeyringStore(st_test_keyrings.FileKeyring(), timeout=2)


def test_stored_passphrase_is_returned(sandbox: Sandbox, tmp_path: Path) -> None:
    key = make_key(tmp_path / "id", PASSPHRASE)
    file_store().set(SecretName.passphrase(str(key)), PASSPHRASE)
    rec = Recorder()
    source = KeyringAuthSource(file_store(), notify=rec.notify)
    assert source.passphrase(str(key)) == PASSPHRASE
    assert rec.notes == [] and rec.prompts == []


def test_rejected_stored_password_non_interactive_gives_none_once(sandbox: Sandbox) -> None:
    name = SecretName.password("alice", "bastion.example", 2222)
    file_store().set(name, "old-pw")
    rec = Recorder()
    source = KeyringAuthSource(file_store(), prompt=None, notify=rec.notify)
    assert source.password(Target()) == "old-pw"
    source.rejected(name)
    source.rejected(name)  # said once, not twice
    assert source.password(Target()) is None
    assert source.password(Target()) is None  # no loop back to the stored one
    assert rec.notes == ["The stored password for alice@bastion.example:2222 was rejected."]
    assert "safetunnel creds set alice@bastion.example:2222" in source.hint()


def test_rejected_then_prompt_and_replace_on_commit(sandbox: Sandbox) -> None:
    name = SecretName.password("alice", "bastion.example", 2222)
    file_store().set(name, "old-pw")
    rec = Recorder(answers=["new-pw", "third", "never-asked"], confirm=True)
    source = KeyringAuthSource(
        file_store(), prompt=rec.prompt, confirm=rec.confirm, notify=rec.notify
    )
    assert source.password(Target()) == "old-pw"
    source.rejected(name)
    assert source.password(Target()) == "new-pw"
    assert len(rec.confirms) == 1
    assert file_store().get(name) == "old-pw"  # not before authentication worked
    source.commit()
    assert file_store().get(name) == "new-pw"
    source.rejected(name)
    assert rec.notes[-1] == "Wrong password for alice@bastion.example:2222."
    assert source.password(Target()) == "third"  # three answers in all, the stored one included
    source.rejected(name)
    assert source.password(Target()) is None
    assert rec.prompts == ["Password for alice@bastion.example:2222"] * 2  # one colon: click's
    assert source.wrong(name)


def test_typed_passphrase_verified_and_replaces_stored(sandbox: Sandbox, tmp_path: Path) -> None:
    key = str(make_key(tmp_path / "id", PASSPHRASE))
    file_store().set(SecretName.passphrase(key), "stale")
    rec = Recorder(answers=[PASSPHRASE], confirm=True)
    source = KeyringAuthSource(
        file_store(), prompt=rec.prompt, confirm=rec.confirm, notify=rec.notify
    )
    assert source.passphrase(key) == "stale"
    source.rejected(SecretName.passphrase(key))
    assert source.passphrase(key) == PASSPHRASE
    assert file_store().get(SecretName.passphrase(key)) == PASSPHRASE
    assert any("stored passphrase" in note and "rejected" in note for note in rec.notes)


def test_wrong_typed_passphrase_is_not_offered_and_three_tries(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    key = str(make_key(tmp_path / "id", PASSPHRASE))
    rec = Recorder(answers=["wrong", "wrong again", "still wrong", "never asked"])
    source = KeyringAuthSource(file_store(), prompt=rec.prompt, notify=rec.notify)
    assert source.passphrase(key) is None
    assert source.passphrase(key) is None
    assert len(rec.prompts) == 3
    assert rec.notes == [f"Wrong passphrase for {key}."] * 3
    assert source.wrong(SecretName.passphrase(key))
    assert file_store().get(SecretName.passphrase(key)) is None


def test_right_passphrase_on_the_third_try(sandbox: Sandbox, tmp_path: Path) -> None:
    key = str(make_key(tmp_path / "id", PASSPHRASE))
    rec = Recorder(answers=["wrong", "", PASSPHRASE])
    source = KeyringAuthSource(file_store(), prompt=rec.prompt, notify=rec.notify)
    assert source.passphrase(key) is None  # an empty answer gives up, as ssh does
    rec2 = Recorder(answers=["wrong", "wrong again", PASSPHRASE])
    again = KeyringAuthSource(file_store(), prompt=rec2.prompt, notify=rec2.notify)
    assert again.passphrase(key) == PASSPHRASE
    assert not again.wrong(SecretName.passphrase(key))


def test_no_keyring_says_why_once_and_prompts(sandbox: Sandbox) -> None:
    rec = Recorder(answers=["typed"])
    source = KeyringAuthSource(KeyringStore(fail.Keyring()), prompt=rec.prompt, notify=rec.notify)
    assert source.password(Target()) == "typed"
    assert source.password(Target(hostname="other")) is None
    assert [n for n in rec.notes if "No OS keyring" in n] == [rec.notes[0]]
    assert len(rec.notes) == 1


def test_hanging_keyring_falls_back_to_prompt(sandbox: Sandbox) -> None:
    rec = Recorder(answers=["typed"])
    store = KeyringStore(st_test_keyrings.HangingKeyring(), timeout=0.2)
    source = KeyringAuthSource(store, prompt=rec.prompt, notify=rec.notify)
    assert source.password(Target()) == "typed"
    assert "did not answer within 0.2 s" in rec.notes[0]


def test_secrets_never_reach_disk_outside_keyring(sandbox: Sandbox, tmp_path: Path) -> None:
    key = str(make_key(sandbox.home / "id", PASSPHRASE))
    rec = Recorder(answers=[PASSPHRASE], confirm=True)
    source = KeyringAuthSource(
        file_store(), prompt=rec.prompt, confirm=rec.confirm, notify=rec.notify
    )
    assert source.passphrase(key) == PASSPHRASE
    assert_secret_absent(PASSPHRASE, sandbox.dirs, [*rec.notes, *rec.prompts, source.hint()])
    # The helper itself must catch a leak, also when JSON-escaped.
    sandbox.state_dir.mkdir()
    for index, ascii_only in enumerate((True, False)):
        leak = sandbox.state_dir / f"leak{index}.json"
        leak.write_text(json.dumps({"x": PASSPHRASE}, ensure_ascii=ascii_only))
        with pytest.raises(AssertionError, match="secret found in file"):
            assert_secret_absent(PASSPHRASE, sandbox.dirs)
        leak.unlink()
    with pytest.raises(AssertionError, match="secret found in output #1"):
        assert_secret_absent(PASSPHRASE, [], ["fine", PASSPHRASE.encode()])
