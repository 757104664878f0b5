"""Stand-in for the OpenSSH engine's option builder (the full one resolves the user's config).

Only the safety options: whatever the user's config says, safetunnel's connection verifies host
keys strictly against both known_hosts files, opens no forward but its own, forwards no agent or
X11, runs no local command, asks for no TTY, and declares the server lost after three
unanswered keepalives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from safetunnel.ssh.target import SSHTarget


def ssh_options(target: SSHTarget, *, known_hosts: Sequence[Path], keepalive: float) -> list[str]:
    """The ``-F``/``-o`` arguments that enforce safetunnel's safety options for ``target``."""
    user_config = Path("~/.ssh/config").expanduser()
    files = " ".join(f'"{path}"' for path in known_hosts)
    # ServerAliveInterval counts whole seconds; rounding down to 0 would switch keepalives off.
    interval = max(1, math.ceil(keepalive))
    options = {
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": files,
        "GlobalKnownHostsFile": "none",
        "ClearAllForwardings": "yes",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "PermitLocalCommand": "no",
        "RequestTTY": "no",
        "BatchMode": "yes",
        "ServerAliveInterval": str(interval),
        "ServerAliveCountMax": "3",
        "ExitOnForwardFailure": "yes",
    }
    args = ["-F", str(user_config) if user_config.is_file() else "/dev/null"]
    for name, value in options.items():
        args += ["-o", f"{name}={value}"]
    return args
