"""Secrets for SSH authentication: keyring first, a prompt only when allowed, never a loop.

:class:`KeyringAuthSource` implements the SSH layer's ``AuthSource`` protocol
(``passphrase(key_path)``, ``password(target)``, ``rejected(name)``). Prompting, confirming and
printing are injected callables, so the CLI owns the terminal and tests pass plain functions.
Keyring access and vetting live in :mod:`safetunnel.secrets.keystore` and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import paramiko

from safetunnel.errors import CredentialError
from safetunnel.secrets.keystore import SERVICE, BackendStatus, KeyringStore, vet_backend
from safetunnel.secrets.names import SecretName

__all__ = [
    "SERVICE",
    "BackendStatus",
    "KeyringAuthSource",
    "KeyringStore",
    "SecretName",
    "key_is_encrypted",
    "verify_passphrase",
    "vet_backend",
]

Prompt = Callable[[str], "str | None"]
# Answers per secret, a stored one included: OpenSSH's NumberOfPasswordPrompts default.
MAX_ANSWERS = 3
Confirm = Callable[[str], bool]
Notify = Callable[[str], None]


class TargetAddress(Protocol):
    """What :meth:`KeyringAuthSource.password` needs of ``ssh.target.SSHTarget`` (read-only)."""

    @property
    def user(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def port(self) -> int: ...


def key_is_encrypted(key_path: str) -> bool:
    """True when the private key needs a passphrase; CredentialError when it is unreadable."""
    try:
        paramiko.PKey.from_path(os.path.expanduser(key_path))
    except TypeError:  # paramiko: "password-protected, but password was not provided"
        return True
    except (OSError, ValueError, paramiko.SSHException) as err:
        raise CredentialError(f"cannot read private key {key_path}: {err}") from err
    return False


def verify_passphrase(key_path: str, passphrase: str) -> bool:
    """Whether ``passphrase`` unlocks the key. Refuses a key that is not encrypted."""
    if not key_is_encrypted(key_path):
        raise CredentialError(f"{key_path} is not encrypted; it has no passphrase to store")
    try:
        # paramiko hands the password to cryptography, which needs bytes; its stubs say str.
        secret = passphrase.encode("utf-8")
        paramiko.PKey.from_path(os.path.expanduser(key_path), secret)  # type: ignore[arg-type, unused-ignore]
    except (ValueError, TypeError, paramiko.SSHException):
        return False
    return True


@dataclass
class _Slot:
    """What happened to one secret during this authentication attempt."""

    name: SecretName
    value: str | None = None
    source: Literal["stored", "typed"] | None = None
    stored_tried: bool = False
    stored_rejected: bool = False
    answers: int = 0  # stored and typed answers given so far, at most MAX_ANSWERS
    wrong_typed: bool = False  # a typed answer was wrong (the failure then says "wrong")
    rejected: bool = False  # the current value was refused
    replace: bool = False  # the user agreed to replace the stored one once it works

    @property
    def kind(self) -> str:
        return self.name.kind

    @property
    def subject(self) -> str:
        """The key path or ``user@host:port``, for messages."""
        return self.name.subject


class KeyringAuthSource:
    """Stored secret first, then typed tries when interactive, three answers in all (as OpenSSH
    gives); ``None`` when out of options.

    ``store`` defaults to the OS keyring. ``prompt`` is None when there is no TTY: then nothing is
    asked and ``None`` lets the SSH layer raise AuthFailed (exit 5) with :meth:`hint`. ``confirm``
    asks whether to replace a stored secret that was rejected. ``notify`` says things once (why the
    keyring is unused, what was rejected). A replacement passphrase is stored at once (it is
    verified against the key locally); a replacement password only in :meth:`commit`, which the
    caller runs after authentication worked.
    """

    def __init__(
        self,
        store: KeyringStore | None = None,
        *,
        prompt: Prompt | None = None,
        confirm: Confirm | None = None,
        notify: Notify | None = None,
        host_label: str | None = None,
    ) -> None:
        # No store given means the OS keyring (vetted on first use), not "no keyring": the
        # share UIs construct this without one, and stored secrets must work for them.
        self._store = store if store is not None else KeyringStore()
        self._prompt = prompt
        self._confirm = confirm
        self._notify = notify or (lambda _message: None)
        self._host_label = host_label
        self._status: BackendStatus | None = None
        self._keyring_failed = False
        self._slots: dict[SecretName, _Slot] = {}

    def passphrase(self, key_path: str) -> str | None:
        """The passphrase for ``key_path``, or None when there is none to offer."""
        slot = self._slot(SecretName.passphrase(key_path))
        return self._secret(slot, f"Passphrase for {slot.subject}")

    def password(self, target: TargetAddress) -> str | None:
        """The SSH password for ``target``, or None when there is none to offer."""
        slot = self._slot(SecretName.password(target.user, target.hostname, target.port))
        if self._host_label is None:
            self._host_label = slot.subject
        return self._secret(slot, f"Password for {slot.subject}")

    def rejected(self, name: SecretName) -> None:
        """The server (or the key) refused the secret last given for ``name``; say so once."""
        slot = self._slots.get(name)
        if slot is None or slot.rejected or slot.value is None:
            return
        slot.rejected = True
        slot.replace = False
        if slot.source == "stored":
            slot.stored_rejected = True
            self._notify(f"The stored {slot.kind} for {slot.subject} was rejected.")
        else:
            slot.wrong_typed = True
            self._notify(f"Wrong {slot.kind} for {slot.subject}.")

    def wrong(self, name: SecretName) -> bool:
        """Whether a typed answer for ``name`` was wrong: the failure then says so, rather than
        that no secret was available."""
        slot = self._slots.get(name)
        return slot is not None and slot.wrong_typed and (slot.value is None or slot.rejected)

    def commit(self) -> None:
        """Store replacement passwords the user agreed to; call after authentication worked."""
        for slot in self._slots.values():
            if slot.replace and slot.value is not None and not slot.rejected:
                self._save(slot)

    def typed_secrets(self) -> dict[SecretName, str]:
        """What the user typed and was not refused: handed to a ``--background`` share (which
        cannot ask) and to OpenSSH's askpass helper. Kept in this process's memory only."""
        return {
            slot.name: slot.value
            for slot in self._slots.values()
            if slot.source == "typed" and slot.value is not None and not slot.rejected
        }

    def remember(self, secrets: Mapping[SecretName, str]) -> None:
        """Secrets typed elsewhere (the foreground of ``--background``, or on the askpass
        helper's terminal): offered first, as if typed here."""
        for name, value in secrets.items():
            slot = self._slot(name)
            slot.value, slot.source, slot.rejected = value, "typed", False
            slot.stored_tried = True  # the user typed it because the stored one did not do
            slot.answers = max(slot.answers, 1)

    def stop_asking(self) -> None:
        """From now on only secrets already known (stored, or typed earlier) are offered: a
        reconnect in the background must never prompt or offer to replace a stored secret."""
        self._prompt = None
        self._confirm = None

    def hint(self) -> str:
        """What to run so that a non-interactive run can authenticate next time."""
        host = self._host_label or "HOST"
        return (
            f"Store the secret in the keyring with `safetunnel creds set {host}` "
            f"(add `--passphrase-for KEYFILE` for a key passphrase), or run on a terminal."
        )

    def _slot(self, name: SecretName) -> _Slot:
        return self._slots.setdefault(name, _Slot(name))

    def _secret(self, slot: _Slot, question: str) -> str | None:
        """``question`` has no trailing colon: the prompt callable adds its own."""
        if slot.value is not None and not slot.rejected:
            return slot.value
        if not slot.stored_tried:
            slot.stored_tried = True
            stored = self._read(slot.name)
            if stored is not None:
                slot.answers += 1
                slot.value, slot.source, slot.rejected = stored, "stored", False
                return stored
        # Bounded: a refused answer is never offered again, and at most MAX_ANSWERS are given.
        while slot.answers < MAX_ANSWERS and self._prompt is not None:
            slot.answers += 1
            typed = self._prompt(question)
            if not typed:
                return None  # an empty answer gives up on this secret, as ssh does
            if self._typed_ok(slot, typed):
                slot.value, slot.source, slot.rejected = typed, "typed", False
                self._offer_replace(slot)
                return typed
            slot.wrong_typed = True
        return None

    def _typed_ok(self, slot: _Slot, typed: str) -> bool:
        if slot.kind == "passphrase" and not verify_passphrase(slot.subject, typed):
            self._notify(f"Wrong passphrase for {slot.subject}.")
            return False
        return True

    def _offer_replace(self, slot: _Slot) -> None:
        if not slot.stored_rejected or self._confirm is None or not self._usable():
            return
        if self._confirm(f"Replace the stored {slot.kind} for {slot.subject} in the keyring?"):
            slot.replace = True
            if slot.kind == "passphrase":  # already verified against the key
                self._save(slot)

    def _save(self, slot: _Slot) -> None:
        assert self._store is not None and slot.value is not None
        try:
            self._store.set(slot.name, slot.value)
        except CredentialError as err:
            self._notify(f"Could not update the keyring: {err.message}")
            return
        slot.replace = False
        self._notify(f"Replaced the stored {slot.kind} for {slot.subject}.")

    def _read(self, name: SecretName) -> str | None:
        if not self._usable():
            return None
        assert self._store is not None
        try:
            return self._store.get(name)
        except CredentialError as err:
            # A broken or locked keyring must not stop a login that a prompt could still finish.
            self._keyring_failed = True
            self._notify(f"{err.message}; continuing without the keyring.")
            return None

    def _usable(self) -> bool:
        if self._store is None or self._keyring_failed:
            return False
        if self._status is None:
            self._status = self._store.status()
            if not self._status.usable and self._status.reason:
                self._notify(self._status.reason)  # said once: the status is cached
        return self._status.usable
