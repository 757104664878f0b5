from __future__ import annotations

import pytest

from safetunnel.addresses import bracket_host, format_hostport


@pytest.mark.parametrize(
    ("host", "text"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("bastion.example", "bastion.example"),
        ("::1", "[::1]"),
        ("2001:db8::7", "[2001:db8::7]"),
        ("[::1]", "[::1]"),  # already bracketed: never twice
        ("", ""),
    ],
)
def test_bracket_host(host: str, text: str) -> None:
    assert bracket_host(host) == text


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("127.0.0.1", 80, "127.0.0.1:80"),
        ("localhost", 8080, "localhost:8080"),
        ("::1", 80, "[::1]:80"),
        ("::", 0, "[::]:0"),
        ("[fe80::1]", 22, "[fe80::1]:22"),
    ],
)
def test_format_hostport(host: str, port: int, text: str) -> None:
    assert format_hostport(host, port) == text


def test_hostport_splits_back_at_the_last_colon() -> None:
    """The reason for the brackets: the port is whatever follows the last colon."""
    for host in ("::1", "2001:db8::7", "10.0.0.1", "h"):
        text = format_hostport(host, 4242)
        rest, port = text.rsplit(":", 1)
        assert port == "4242" and rest.strip("[]") == host
