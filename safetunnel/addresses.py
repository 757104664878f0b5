"""Host and port as text, and the two remote bind addresses a share may ask for. Pure."""

from __future__ import annotations

# The remote end binds 127.0.0.1, not "localhost": for "localhost" sshd binds each loopback
# family that is free and reports success even when only [::1]:PORT worked, so a link to
# localhost:PORT could reach another program holding 127.0.0.1:PORT, token and all. An explicit
# address is either bound exactly or refused (exit 6).
LOOPBACK_BIND = "127.0.0.1"
PUBLIC_BIND = "0.0.0.0"  # noqa: S104 - only with --public


def bracket_host(host: str) -> str:
    """An IPv6 literal in brackets (``[::1]``); any other host as it is."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_hostport(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed: ``127.0.0.1:80``, ``[::1]:80``."""
    return f"{bracket_host(host)}:{port}"
