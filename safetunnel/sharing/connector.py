"""Opening SSH sessions to a share's server: the first one, and every reconnect after a loss.

One code path for both, so a reconnect checks the host key and authenticates exactly as the
first connect did. Only the first may ask (an unknown host key, a secret); a reconnect never
does: the key must be the one known by then, and secrets come from the keyring or from what the
user typed at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetunnel import paths
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.sharing.engines import Engine, ShareSession, open_openssh
from safetunnel.ssh.client import HostKeyPrompt, open_session
from safetunnel.ssh.hostkeys import HostKeyStore
from safetunnel.ssh.target import SSHTarget


@dataclass
class Connector:
    """How to reach one server through one engine. ``auth`` holds the secrets: paramiko asks
    it directly; for OpenSSH (whose askpass helper reads the keyring itself) it keeps what was
    typed, so that a ``--background`` child and a reconnect need not ask again."""

    target: SSHTarget
    engine: Engine
    known_hosts: str | None
    keepalive: float
    auth: KeyringAuthSource | None = None

    def open(self, prompt: HostKeyPrompt | None) -> ShareSession:
        """Connect and authenticate; ``prompt`` asks about an unknown host key (None: refuse)."""
        if self.engine == "openssh":
            typed = self.auth.typed_secrets() if self.auth is not None else {}
            opened = open_openssh(self.target, self.known_hosts, prompt, self.keepalive, typed)
            if self.auth is not None:
                self.auth.remember(typed)
            return opened
        user_known = Path(self.known_hosts) if self.known_hosts else None
        store = HostKeyStore(user_known, paths.own_known_hosts())
        session = open_session(self.target, hostkeys=store, on_unknown_key=prompt, auth=self.auth)
        if self.auth is not None:
            self.auth.commit()  # a replacement password the user agreed to, once it worked
        return session

    def reopen(self) -> ShareSession:
        """A new session for a reconnect: nothing is asked, nothing is trusted anew."""
        if self.auth is not None:
            self.auth.stop_asking()
        return self.open(None)
