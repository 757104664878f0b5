"""The OpenSSH engine: OpenSSH's ``ssh`` carries the transport, Python runs only the gate.

``auto`` may pick it when :func:`usable` finds an ``ssh`` client of at least
:data:`MIN_VERSION`. Why that version: a remote forward to a unix socket (``-R
port:/path``) needs 6.7, ``ssh -O forward`` printing the port the server picked and ``-O
cancel`` need 6.0/6.7, and ``ProxyJump``, which the users' configs this engine exists for
commonly hold, needs 7.3; an older client would refuse such a config outright.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

MIN_VERSION = (7, 3)
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
