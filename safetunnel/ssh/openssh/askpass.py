"""Secrets for OpenSSH's ``ssh`` straight from the keyring, through its askpass hook.

``ssh`` runs ``$SSH_ASKPASS`` with the prompt as its one argument and reads the answer from the
helper's stdout. The helper here reads the keyring itself, so a secret never travels through
argv, the environment or a file: only the prompt (which names a key file or ``user@host``) and the
target's address go in, and the secret goes straight down ssh's pipe. With no stored secret it
answers nothing and exits 1; ssh then tries its next method and finally reports the failure that
the engine turns into exit 5 with the ``creds set`` hint. When the share runs in a terminal, the
helper may instead ask there (``interactive``), never on a detached process.

Run as ``python -m safetunnel.ssh.openssh.askpass PROMPT``, through a small executable script,
because ssh executes ``$SSH_ASKPASS`` as one program with no arguments of its own.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

from safetunnel import fsutil, paths
from safetunnel.errors import SafetunnelError
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.target import SSHTarget, parse_target

TARGET_ENV = "SAFETUNNEL_ASKPASS_TARGET"  # user@host:port of the share's host; not a secret
TTY_ENV = "SAFETUNNEL_ASKPASS_TTY"
_PASSPHRASE = re.compile(r"^Enter passphrase for (?:key )?'(?P<path>.+)':\s*$")
# "user@host's password:" (password auth) and "(user@host) Password:" (keyboard-interactive).
_PASSWORD = re.compile(
    r"^(?:(?P<user>[^\s@]+(?:@[^\s@]+)*)@(?P<host>[^\s@']+)'s password:"
    r"|\((?P<kuser>[^\s()]+)@(?P<khost>[^\s()@]+)\) Password:)\s*$"
)


def helper_path() -> Path:
    """The executable that ssh runs: a two-line script starting this module with this Python.

    Named by its content (the interpreter's path) in the 0700 state dir; created 0700 in one step.
    """
    text = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m safetunnel.ssh.openssh.askpass "$@"\n'
    directory = fsutil.ensure_private_dir(paths.state_dir() / "openssh")
    path = directory / f"askpass-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if path.exists() and path.read_text() == text:
        return path
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o700)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def askpass_env(target: SSHTarget, *, interactive: bool = False) -> dict[str, str]:
    """The environment for an ``ssh`` of this share: this process's, plus the askpass hook.

    ``SSH_ASKPASS_REQUIRE=force`` makes ssh use the helper even with a terminal and without
    ``DISPLAY``, so a prompt never lands on a terminal the share does not control.
    """
    env = dict(os.environ)
    env.update(
        SSH_ASKPASS=str(helper_path()),
        SSH_ASKPASS_REQUIRE="force",
        **{TARGET_ENV: target.display},
    )
    if interactive:
        env[TTY_ENV] = "1"
    else:
        env.pop(TTY_ENV, None)
    return env


def secret_for(prompt: str, target: SSHTarget | None) -> SecretName | None:
    """Which keyring entry answers ssh's ``prompt``; None for a prompt that asks for no secret
    safetunnel stores (a PIN, a yes/no question)."""
    passphrase = _PASSPHRASE.match(prompt)
    if passphrase:
        return SecretName.passphrase(passphrase.group("path"))
    password = _PASSWORD.match(prompt)
    if not password:
        return None
    user = password.group("user") or password.group("kuser")
    host = password.group("host") or password.group("khost")
    # ssh's prompt names no port: the share's own target supplies it when it is that host.
    same = target is not None and (target.user, target.hostname) == (user, host)
    return SecretName.password(user, host, target.port if same and target else 22)


def _target_from_env() -> SSHTarget | None:
    text = os.environ.get(TARGET_ENV)
    if not text:
        return None
    try:
        return parse_target(text)
    except SafetunnelError:
        return None


def _ask_tty(prompt: str) -> str | None:
    """Ask on the controlling terminal, when the share said it has one."""
    if os.environ.get(TTY_ENV) != "1":
        return None
    try:
        with open("/dev/tty", "w+") as tty:  # never stdin: no terminal means no question
            return getpass.getpass(prompt, stream=tty)
    except (OSError, EOFError):
        return None


def main(argv: list[str]) -> int:
    """Print the secret for ``argv[1]`` and exit 0, or print nothing and exit 1."""
    prompt = argv[1] if len(argv) > 1 else ""
    name = secret_for(prompt.strip(), _target_from_env())
    if name is None:
        return 1
    secret: str | None = None
    try:
        store = KeyringStore()
        if store.status().usable:
            secret = store.get(name)
    except SafetunnelError:
        secret = None
    if secret is None:
        secret = _ask_tty(prompt)
    if not secret:
        return 1
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
