"""ssh's ``KnownHostsCommand`` for connect: vouch for exactly the host key the ticket names.

ssh runs ``python -m safetunnel.receiving.pincheck SHA256:… %H %t %K`` for the host (never for a
ProxyJump hop: those keep the user's known_hosts) and trusts what it prints. It prints the
known_hosts line for the key ssh was shown only when that key's SHA-256 is the ticket's, and
nothing otherwise, so ssh (with StrictHostKeyChecking and no known_hosts file) refuses every
other key before any credential is offered. The fingerprint is public; no secret is on argv.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import sys


def fingerprint_of(key_base64: str) -> str:
    """``SHA256:<base64 without padding>`` of a key in known_hosts' base64 form; "" if none."""
    try:
        blob = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError):
        return ""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return "SHA256:" + digest


def line_for(pinned: str, host: str, key_type: str, key: str) -> str | None:
    """The known_hosts line that makes ssh accept ``key`` for ``host``, if it is the pinned one."""
    shown = fingerprint_of(key)
    if not shown or not hmac.compare_digest(shown.encode(), pinned.encode()):
        return None
    return f"{host} {key_type} {key}"


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        return 1
    line = line_for(*argv)
    if line is not None:
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
