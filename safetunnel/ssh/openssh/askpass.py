"""Secrets for OpenSSH's ``ssh`` straight from the keyring, through its askpass hook.

``ssh`` runs ``$SSH_ASKPASS`` with the prompt as its one argument and reads the answer from the
helper's stdout. The helper here reads the keyring itself, so a secret never travels through
argv, the environment or a file: only the prompt (which names a key file or ``user@host``) and the
target's address go in, and the secret goes straight down ssh's pipe. With no stored secret it
answers nothing and exits 1; ssh then tries its next method and finally reports the failure that
the engine turns into exit 5 with the ``creds set`` hint. When the share runs in a terminal, the
helper may instead ask on that terminal (opened by name: ssh runs in a session of its own, with
no controlling terminal), never on a detached process.

What the helper did goes to a report file the engine names (0600, in a private directory): which
secret it was asked for, whether it answered from the keyring or from a typed answer, and why an
unusable keyring was skipped. Never a secret: the engine reads it to say, as the paramiko engine
does, that *the stored password for X was rejected*, or that no usable keyring exists.

Run as ``python -m safetunnel.ssh.openssh.askpass PROMPT``, through a small executable script,
because ssh executes ``$SSH_ASKPASS`` as one program with no arguments of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import sys
import termios
from pathlib import Path
from typing import NamedTuple

from safetunnel import fsutil, paths
from safetunnel.errors import SafetunnelError
from safetunnel.secrets.handoff import ask_broker
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.openssh.master import die_with_parent
from safetunnel.ssh.target import SSHTarget, parse_target

TARGET_ENV = "SAFETUNNEL_ASKPASS_TARGET"  # user@host:port of the share's host; not a secret
TTY_ENV = "SAFETUNNEL_ASKPASS_TTY"  # the share's terminal device, when it may ask there
REPORT_ENV = "SAFETUNNEL_ASKPASS_REPORT"  # where the helper notes what it did (no secrets)
ASKING = "asking"  # the source noted while the helper waits for a typed answer
MAX_ANSWERS = 3  # answers per secret, a stored one included, as on the paramiko engine
BROKER_ENV = "SAFETUNNEL_ASKPASS_BROKER"  # the share's secret socket (a path, not a secret)
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


def askpass_env(
    target: SSHTarget,
    *,
    interactive: bool = False,
    report: Path | None = None,
    broker: Path | None = None,
) -> dict[str, str]:
    """The environment for an ``ssh`` of this share: this process's, plus the askpass hook.

    ``SSH_ASKPASS_REQUIRE=force`` makes ssh use the helper even with a terminal and without
    ``DISPLAY``, so a prompt never lands on a terminal the share does not control.
    ``interactive``: the helper may ask on this process's terminal (stdin's) when the keyring
    has no answer. ``report``: where it notes what it did (see :func:`read_report`).
    ``broker``: the share's :class:`~safetunnel.secrets.handoff.SecretBroker` socket, which
    hands over secrets typed before (``--background``) and learns the ones typed here.
    """
    env = dict(os.environ)
    env.update(
        SSH_ASKPASS=str(helper_path()),
        SSH_ASKPASS_REQUIRE="force",
        **{TARGET_ENV: target.display},
    )
    for name in (TTY_ENV, REPORT_ENV, BROKER_ENV):
        env.pop(name, None)
    if interactive and os.isatty(0):
        env[TTY_ENV] = os.ttyname(0)
    if report is not None:
        env[REPORT_ENV] = str(report)
    if broker is not None:
        env[BROKER_ENV] = str(broker)
    return env


class Answer(NamedTuple):
    """One report line: what was asked (``password``/``passphrase``/``keyring``), where the answer
    came from (``stored``, ``typed``, ``none``; ``unusable`` for the keyring) and about what."""

    kind: str
    source: str
    subject: str


def read_report(report: Path) -> list[Answer]:
    """The helper's answers, oldest first; empty when it never ran."""
    return [answer for answer in _notes(report) if answer.source != ASKING]


def asking(report: Path) -> bool:
    """The helper is asking on the terminal now (its last note says so)."""
    notes = _notes(report)
    return bool(notes) and notes[-1].source == ASKING


def _notes(report: Path) -> list[Answer]:
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return []
    return [Answer(*line.split("\t", 2)) for line in text.splitlines() if line.count("\t") >= 2]


def _note(kind: str, source: str, subject: str) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    line = "\t".join(part.replace("\t", " ").replace("\n", " ") for part in (kind, source, subject))
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


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


def _ask_tty(question: str, notice: str | None) -> str | None:
    """Ask on the share's terminal, with echo off, when the share said it has one."""
    path = os.environ.get(TTY_ENV)
    if not path or not path.startswith("/dev/"):
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    # Killed at the prompt (the share ended), it still gives the terminal its echo back.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    try:
        if notice:
            os.write(fd, (notice + "\r\n").encode())
        before = termios.tcgetattr(fd)
        quiet = list(before)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            os.write(fd, question.encode())
            answer = _read_line(fd)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, before)
            os.write(fd, b"\r\n")
        return answer
    except OSError:
        return None
    finally:
        os.close(fd)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _read_line(fd: int) -> str | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1024)
        if not chunk:
            return None  # end of input: no answer
        data += chunk
    return data.decode("utf-8", "replace").rstrip("\r\n")


def _stored(name: SecretName) -> tuple[str | None, str | None]:
    """(the stored secret, why the keyring was not used): either may be None."""
    try:
        store = KeyringStore()
        status = store.status()
        if not status.usable:
            return None, status.reason or "No usable keyring."
        return store.get(name), None
    except SafetunnelError as err:
        return None, err.message


def _question(name: SecretName) -> str:
    """The paramiko engine's wording, so both engines ask alike."""
    return f"{name.kind.capitalize()} for {name.subject}: "  # one colon, as click shows it


def _earlier(name: SecretName) -> list[Answer]:
    """What this login already answered for ``name``: ssh asks again only after a wrong one."""
    path = os.environ.get(REPORT_ENV)
    answers = read_report(Path(path)) if path else []
    return [
        a
        for a in answers
        if (a.kind, a.subject) == (name.kind, name.subject) and a.source in ("stored", "typed")
    ]


def _retry_notice(name: SecretName, earlier: list[Answer]) -> str | None:
    if not earlier:
        return None
    if earlier[-1].source == "stored":
        return f"The stored {name.kind} for {name.subject} was rejected."
    return f"Wrong {name.kind} for {name.subject}."


def main(argv: list[str]) -> int:
    """Print the secret for ``argv[1]`` and exit 0, or print nothing and exit 1."""
    prompt = argv[1] if len(argv) > 1 else ""
    name = secret_for(prompt.strip(), _target_from_env())
    if name is None:
        return 1
    earlier = _earlier(name)
    broker = os.environ.get(BROKER_ENV)
    # Asked every time: a request for a secret typed before tells the broker it was wrong.
    handed = ask_broker(broker, {"op": "get", "name": name.username}) if broker else None
    if len(earlier) >= MAX_ANSWERS:
        return 1
    secret, unusable, source = handed, None, "typed"  # handed: typed before, in the foreground
    if secret is None and not any(a.source == "stored" for a in earlier):
        secret, unusable = _stored(name)  # a stored answer is offered once
        source = "stored"
    if unusable is not None:
        _note("keyring", "unusable", unusable)
    if secret is None:
        notice = _retry_notice(name, earlier) or unusable
        if os.environ.get(TTY_ENV):
            # Waiting at the terminal, it must not outlive its ssh (a share killed with -9).
            die_with_parent(os.getppid())()
            _note(name.kind, ASKING, name.subject)  # the share's login wait holds still meanwhile
        secret, source = _ask_tty(_question(name), notice), "typed"
        if secret and broker:
            ask_broker(broker, {"op": "typed", "name": name.username, "secret": secret})
    if not secret:
        _note(name.kind, "none", name.subject)
        return 1
    _note(name.kind, source, name.subject)
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
