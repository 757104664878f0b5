"""Host-key trust for the OpenSSH engine, decided by OpenSSH itself.

A probe runs ``ssh`` with the engine's own options, so ProxyJump, ProxyCommand, HostKeyAlias and
``@cert-authority`` all apply exactly as on the real connection, and stops before logging in (it
offers no authentication method, and runs in batch mode). A ``KnownHostsCommand`` that prints
nothing, and so trusts nothing, records which key each hop showed, tagged with the ``ssh`` process
that asked: the probe itself for the host, a child ``ssh`` for each ProxyJump hop. When ssh
refuses an unknown key, the recorded key is what the user is asked about and what gets pinned in
safetunnel's own known_hosts (never the user's); then the probe runs again, so a jump host and
its target are each asked about in turn.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from safetunnel import fsutil, paths
from safetunnel.addresses import format_hostport
from safetunnel.errors import HostKeyChanged, HostKeyUnknown, SafetunnelError, SSHError
from safetunnel.ssh.engine import HostKeyState
from safetunnel.ssh.handshake import HANDSHAKE_TIMEOUT
from safetunnel.ssh.hostkeys import HostKeyStore, repin_hint
from safetunnel.ssh.openssh.askpass import askpass_env
from safetunnel.ssh.openssh.config import default_known_hosts, destination, quote
from safetunnel.ssh.openssh.errors import AUTH, CHANGED, UNKNOWN, errors_from_ssh, without_debug
from safetunnel.ssh.openssh.master import die_with_parent
from safetunnel.ssh.target import SSHTarget

HostKeyPrompt = Callable[[SSHTarget, str, str], bool]
CERT_SUFFIX = "-cert-v01@openssh.com"
MAX_HOPS = 8  # each probe pins at most one key; a chain longer than this is not a real setup
PROBE_TIMEOUT = 60.0


class VerifiedHostKey(NamedTuple):
    """What :func:`verify` found: unpacks as ``state, fingerprint, key_type``.

    ``key_type`` is ssh's name for what the server showed; a ``…-cert-v01@openssh.com`` type
    means a certificate that a ``@cert-authority`` line in the user's known_hosts vouched for
    (:attr:`certified`), and ``fingerprint`` is then that of the certified key.
    """

    state: HostKeyState
    fingerprint: str
    key_type: str

    @property
    def certified(self) -> bool:
        return self.key_type.endswith(CERT_SUFFIX)


class _Seen(NamedTuple):
    """One key a hop showed: the known_hosts name ssh looked up, the key, its fingerprint."""

    main: bool
    name: str
    key_type: str
    key: str
    fingerprint: str


def verify(
    target: SSHTarget,
    *,
    known_hosts: Sequence[Path],
    on_unknown_key: HostKeyPrompt | None,
    options: list[str],
    ssh: str = "ssh",
) -> VerifiedHostKey:
    """Check every hop's host key as OpenSSH does; ask about unknown ones, pin the accepted.

    ``options`` are :func:`~safetunnel.ssh.openssh.config.ssh_options` for this target.
    Raises HostKeyUnknown (nobody to ask, or declined) or HostKeyChanged (exit 4), and the
    error :func:`errors_from_ssh` finds for anything else that stops the probe before login.
    """
    trusted_now = False
    for _attempt in range(MAX_HOPS):
        full, seen = _probe(target, options, ssh)
        stderr = without_debug(full)
        hop = seen[-1] if seen else None
        if _has(stderr, CHANGED) or _has(stderr, UNKNOWN):
            if hop is None or _has(stderr, CHANGED):
                revoked = "REVOKED HOST KEY" in stderr
                raise _changed(errors_from_ssh(full, target), target, None if revoked else hop)
            _trust(target, hop, known_hosts, on_unknown_key)
            trusted_now = trusted_now or hop.main
            continue
        if hop is None or not hop.main or not _has(stderr, AUTH):
            raise errors_from_ssh(full, target)
        return VerifiedHostKey(
            "newly-trusted" if trusted_now else "pinned", hop.fingerprint, hop.key_type
        )
    raise SSHError(f"more than {MAX_HOPS} unknown host keys on the way to {target.display}")


def _has(stderr: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in stderr for phrase in phrases)


def _probe(target: SSHTarget, options: list[str], ssh: str) -> tuple[str, list[_Seen]]:
    """Run one probe; ssh's stderr and the keys recorded, in the order ssh met them."""
    workdir = Path(tempfile.mkdtemp(prefix="probe-", dir=_probe_parent()))
    try:
        record = workdir / "seen"
        fsutil.atomic_write(record, b"")  # 0600 before ssh's shell appends to it
        recorder = _recorder(record)
        # ssh passes -F, but not -o, to the ssh it starts for a ProxyJump hop: a config that
        # names the recorder first (first value wins) and then includes the engine's reaches it.
        config = workdir / "config"
        fsutil.atomic_write(config, _probe_config(recorder, options).encode())
        probe = [
            ssh,
            "-F",
            str(config),
            *_first(("KnownHostsCommand", recorder), ("BatchMode", "yes")),
            *_first(("PreferredAuthentications", "none"), ("ControlMaster", "no")),
            *_first(("ControlPath", "none"), *_deadlines()),
            *_without_config(options),
            *destination(target),
        ]
        process = subprocess.Popen(
            probe,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=askpass_env(target),  # a jump host's key passphrase comes from the keyring
            preexec_fn=die_with_parent(os.getpid()),  # a share that dies takes its probe along
        )
        return _finish(process, target), _read_record(record, process.pid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finish(process: subprocess.Popen[str], target: SSHTarget) -> str:
    """The probe's stderr; the probe never outlives this wait (a timeout, a signal's exit)."""
    try:
        _, stderr = process.communicate(timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise SSHError(f"checking the host key of {target.display} timed out") from None
    except BaseException:  # a signal's exit: the share ends, and the probe with it
        process.kill()
        process.wait()
        raise
    return stderr


def _probe_parent() -> Path:
    return fsutil.ensure_private_dir(paths.state_dir() / "openssh")


def _deadlines() -> tuple[tuple[str, str], ...]:
    """The paramiko engine's handshake deadline: ConnectTimeout bounds the TCP connect and the
    greeting, one unanswered ServerAlive interval the key exchange; DEBUG1 logs the greeting,
    so that a fault can be told as what the far end did."""
    seconds = str(round(HANDSHAKE_TIMEOUT))
    return (
        ("ConnectTimeout", seconds),
        ("ServerAliveInterval", seconds),
        ("ServerAliveCountMax", "1"),
        ("LogLevel", "DEBUG1"),
    )


def _first(*pairs: tuple[str, str]) -> list[str]:
    return [arg for key, value in pairs for arg in ("-o", f"{key}={value}")]


def _recorder(record: Path) -> str:
    # ssh splits this into argv itself and runs it without a shell of its own; the only "%" are
    # ssh's tokens: the known_hosts name, key type, key and fingerprint. $PPID tells the hops apart.
    return f'/bin/sh -c \'echo "$PPID" "$@" >> "$0"\' {quote(str(record))} %H %t %K %f'


def _probe_config(recorder: str, options: list[str]) -> str:
    lines = [f"KnownHostsCommand {recorder}"]
    engine_config = _config_of(options)
    if engine_config is not None:
        lines.append(f"Include {quote(engine_config)}")
    return "\n".join(lines) + "\n"


def _config_of(options: Sequence[str]) -> str | None:
    for flag, value in itertools.pairwise(options):
        if flag == "-F":
            return value
    return None


def _without_config(options: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in options:
        if skip:
            skip = False
        elif arg == "-F":
            skip = True
        else:
            out.append(arg)
    return out


def _changed(error: SafetunnelError, target: SSHTarget, hop: _Seen | None) -> SafetunnelError:
    """ssh's own error, with the command that re-pins the key it saw once that is checked."""
    if not isinstance(error, HostKeyChanged) or hop is None:
        return error
    host = target.label or target.display if hop.main else format_hostport(*_split_name(hop.name))
    return HostKeyChanged(
        f"{error.message} It now shows {hop.key_type} {hop.fingerprint}.",
        hint=repin_hint(host, hop.fingerprint),
    )


def _read_record(record: Path, main_pid: int) -> list[_Seen]:
    seen: list[_Seen] = []
    with contextlib.suppress(FileNotFoundError):
        for line in record.read_text().splitlines():
            fields = line.split()
            if len(fields) != 5 or fields[2] == "NONE":
                continue  # ssh also asks before the key exchange, with no key yet
            pid, name, key_type, key, fingerprint = fields
            item = _Seen(pid == str(main_pid), name, key_type, key, fingerprint)
            if not seen or seen[-1] != item:
                seen.append(item)
    return seen


def _split_name(name: str) -> tuple[str, int]:
    """A known_hosts name back into host and port: ``[host]:port`` or ``host`` (port 22)."""
    if name.startswith("[") and "]:" in name:
        host, _, port = name[1:].rpartition("]:")
        return host, int(port)
    return name, 22


def _trust(
    target: SSHTarget,
    hop: _Seen,
    known_hosts: Sequence[Path],
    on_unknown_key: HostKeyPrompt | None,
) -> None:
    """Ask about one unknown key and pin it in safetunnel's own file, or raise."""
    host, port = _split_name(hop.name)
    stores = [HostKeyStore(path, paths.own_known_hosts()) for path in known_hosts] or [
        HostKeyStore(path, paths.own_known_hosts()) for path in default_known_hosts()
    ]
    pinned = {kind for store in stores for kind in store.known_types(host, port)}
    label = target.label or target.display
    if pinned:  # a key of another type is pinned: never let that fall back to the milder prompt
        raise HostKeyChanged(
            f"{hop.name} showed a {hop.key_type} key {hop.fingerprint}, but only "
            f"{', '.join(sorted(pinned))} keys are pinned for it. Someone may be intercepting "
            "the connection.",
            hint=repin_hint(label if hop.main else f"{host}:{port}", hop.fingerprint),
        )
    asked = target if hop.main else SSHTarget(host, port, getpass.getuser(), label=f"{hop.name}")
    if on_unknown_key is None:
        where = "" if hop.main else f" (a jump host on the way to {target.display})"
        trust = label if hop.main else f"{host}:{port}"
        raise HostKeyUnknown(
            f"The host key of {hop.name}{where} is not known: {hop.key_type} {hop.fingerprint}",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {trust} --fingerprint {hop.fingerprint}`.",
        )
    if not on_unknown_key(asked, hop.key_type, hop.fingerprint):
        raise HostKeyUnknown(f"The host key of {hop.name} ({hop.fingerprint}) was not trusted.")
    base64.b64decode(hop.key, validate=True)  # only ever write a well-formed key line
    fsutil.ensure_private_dir(paths.own_known_hosts().parent)
    fsutil.append_line(paths.own_known_hosts(), f"{hop.name} {hop.key_type} {hop.key}")
