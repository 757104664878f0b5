"""The OpenSSH engine: OpenSSH's ``ssh`` carries the transport, Python runs only the gate.

``auto`` may pick it when :func:`usable` finds an ``ssh`` client of at least
:data:`MIN_VERSION`. Why that version: the safety options passed on every connection include
``SessionType``, ``StdinNull`` and ``ForkAfterAuthentication`` (8.7) and ``KnownHostsCommand``
(8.5, the host-key probe), and ssh treats an option it does not know as fatal. From 8.4 on, ssh
also prefixes a server's keyboard-interactive prompts with ``(user@host)``, so a server cannot
word a prompt to look like a local passphrase question and obtain a stored secret through the
askpass helper.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

MIN_VERSION = (8, 7)
_VERSION = re.compile(r"OpenSSH_(\d+)\.(\d+)")


@functools.cache
def openssh_version() -> tuple[int, int] | None:
    """The ``ssh`` client's (major, minor) version, or None when there is none on PATH."""
    if shutil.which("ssh") is None:
        return None
    try:
        done = subprocess.run(
            ["ssh", "-V"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(done.stderr + done.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def usable() -> bool:
    """True when an ``ssh`` client of at least MIN_VERSION is on PATH."""
    version = openssh_version()
    return version is not None and version >= MIN_VERSION
