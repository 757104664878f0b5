"""The client's authentication chain: given key, agent, identity files, then password.

Each secret is asked for once and a refused one is reported through ``AuthSource.rejected`` once,
so a stale keyring entry can be dropped and nothing loops. ``rejected`` gets the secret's
:class:`~safetunnel.secrets.names.SecretName`, built by the same constructors the keystore uses,
so the report names exactly the stored entry (IPv6 spelling included).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import paramiko

from safetunnel.errors import AuthFailed, SSHError
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.hostkeys import fingerprint

if TYPE_CHECKING:
    from safetunnel.ssh.target import SSHTarget

log = logging.getLogger("safetunnel.ssh")
DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
# Upper bound on the answers asked of an AuthSource for one secret; the source itself gives at
# most three (as OpenSSH's NumberOfPasswordPrompts), this only guarantees that nothing loops.
_MAX_ANSWERS = 4


class AuthSource(Protocol):
    """Where secrets come from (keyring, prompt). Called at most once per secret per session."""

    def passphrase(self, key_path: str) -> str | None: ...
    def password(self, target: SSHTarget) -> str | None: ...
    def rejected(self, name: SecretName) -> None:
        """The secret last given for ``name`` was refused; never offer it again."""

    def wrong(self, name: SecretName) -> bool:
        """Whether the user typed a wrong answer for ``name`` (and none right)."""


class _Chain:
    def __init__(
        self, transport: paramiko.Transport, target: SSHTarget, auth: AuthSource | None
    ) -> None:
        self.transport, self.target, self.auth = transport, target, auth
        self.tried: list[str] = []
        self.allowed = {"publickey", "password"}

    def probe(self) -> bool:
        """``none`` auth: succeeds on an open server, else tells which methods are allowed."""
        try:
            self.transport.auth_none(self.target.user)
        except paramiko.BadAuthenticationType as exc:
            self.allowed = set(exc.allowed_types)
        except paramiko.AuthenticationException:
            return False  # refused without a method list: the chain tries each method anyway
        return self.transport.is_authenticated()

    def try_key(self, key: paramiko.PKey, label: str) -> bool:
        if "publickey" not in self.allowed:
            return False
        try:
            self.transport.auth_publickey(self.target.user, key)
        except paramiko.BadAuthenticationType as exc:
            self.allowed = set(exc.allowed_types)
            self.tried.append(f"{label} (server does not accept keys)")
        except paramiko.AuthenticationException:
            self.tried.append(f"{label} (rejected)")
        except paramiko.SSHException as exc:
            where = self.target.display
            raise SSHError(f"SSH error while authenticating to {where}: {exc}") from exc
        return self.transport.is_authenticated()

    def try_agent(self) -> bool:
        if not os.environ.get("SSH_AUTH_SOCK") or "publickey" not in self.allowed:
            return False
        try:
            agent = paramiko.Agent()
        except paramiko.SSHException:
            return False  # a dead agent socket is the same as no agent
        try:
            return any(
                self.try_key(key, f"agent key {fingerprint(key)}") for key in agent.get_keys()
            )
        finally:
            agent.close()

    def load_key(self, path: str) -> paramiko.PKey | None:
        try:
            return paramiko.PKey.from_path(path)
        except (paramiko.PasswordRequiredException, TypeError):
            # Encrypted (cryptography says "no password given" with TypeError): unlock below.
            return self._unlock(path)
        except (paramiko.SSHException, OSError, ValueError) as exc:
            self.tried.append(f"{path} (unreadable: {type(exc).__name__})")
            return None

    def _unlock(self, path: str) -> paramiko.PKey | None:
        absolute = os.path.abspath(path)
        name = SecretName.passphrase(absolute)
        refused = False
        for _ in range(_MAX_ANSWERS):
            if self.auth is None or (phrase := self.auth.passphrase(absolute)) is None:
                break
            try:
                # from_path hands the password to cryptography, which wants bytes (stub: str)
                return paramiko.PKey.from_path(path, password=phrase.encode())  # type: ignore[arg-type]
            except (paramiko.SSHException, ValueError):
                self.auth.rejected(name)
                refused = True
        wrong = refused or (self.auth is not None and self.auth.wrong(name))
        why = "wrong passphrase" if wrong else "encrypted, no passphrase available"
        self.tried.append(f"{path} ({why})")
        return None

    def try_files(self) -> bool:
        for path in identity_files(self.target.identity_files):
            if "publickey" not in self.allowed:
                return False
            key = self.load_key(path)
            if key is not None and self.try_key(key, path):
                return True
        return False

    def try_password(self) -> bool:
        if "password" not in self.allowed:
            return False
        t = self.target
        name = SecretName.password(t.user, t.hostname, t.port)
        why = "none available"
        for _ in range(_MAX_ANSWERS):
            if self.auth is None or (secret := self.auth.password(t)) is None:
                break
            try:
                self.transport.auth_password(t.user, secret)
            except paramiko.AuthenticationException:
                if not self.transport.is_active():
                    raise  # the server hung up: no answer on the password
                self.auth.rejected(name)
                why = "rejected"
                continue
            return self.transport.is_authenticated()
        if self.auth is not None and self.auth.wrong(name):
            why = "wrong"
        self.tried.append(f"password ({why})")
        return False


def identity_files(configured: tuple[str, ...]) -> list[str]:
    """The configured files, else the default ~/.ssh/id_* files that exist."""
    if configured:
        return [os.path.expanduser(path) for path in configured]
    ssh_dir = Path.home() / ".ssh"
    return [str(ssh_dir / name) for name in DEFAULT_IDENTITIES if (ssh_dir / name).is_file()]


def authenticate(
    transport: paramiko.Transport,
    target: SSHTarget,
    auth: AuthSource | None,
    client_key: paramiko.PKey | None,
) -> None:
    """Run the chain; :class:`AuthFailed` (exit 5) names everything that was tried, and
    :class:`SSHError` says when the server hung up meanwhile (its LoginGraceTime ran out while
    someone read the host key, say): that is neither a refused key nor a wrong password."""
    try:
        _run_chain(transport, target, auth, client_key)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if transport.is_active():
            raise
        raise SSHError(
            f"The SSH connection to {target.display} ended during the login"
            f" ({str(exc) or type(exc).__name__}).",
            hint="The server may allow only so long to log in (LoginGraceTime); try again.",
        ) from exc


def _run_chain(
    transport: paramiko.Transport,
    target: SSHTarget,
    auth: AuthSource | None,
    client_key: paramiko.PKey | None,
) -> None:
    chain = _Chain(transport, target, auth)
    if chain.probe():
        return
    if client_key is not None and chain.try_key(client_key, "the given client key"):
        return
    if chain.try_agent() or chain.try_files() or chain.try_password():
        return
    tried = "; ".join(chain.tried) or "nothing (no keys, no agent, no password)"
    host = target.label or target.display
    raise AuthFailed(
        f"SSH authentication to {target.display} failed. Tried: {tried}. "
        f"Server accepts: {', '.join(sorted(chain.allowed)) or 'nothing'}.",
        hint=f"Install your public key on the host, pass --identity FILE, or store a password "
        f"with `safetunnel creds set {host}`.",
    )
