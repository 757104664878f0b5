"""Attacks on ``safetunnel gateway``'s login: a public key without its private half, and
authorized_keys options that the gateway would silently ignore."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from e2e import E2E
from paramiko.common import MSG_USERAUTH_PK_OK, cMSG_SERVICE_REQUEST, cMSG_USERAUTH_REQUEST

from safetunnel.errors import ConfigError
from safetunnel.ssh.gateway import Gateway, load_authorized_keys
from safetunnel.ssh.keys import generate_ed25519

LOGIN_LIMIT = 1.0
PATIENCE = 15.0


def _send(transport: paramiko.Transport, *fields: bytes | str | bool) -> None:
    message = paramiko.Message()
    message.add_byte(fields[0])  # type: ignore[arg-type]
    for field in fields[1:]:
        if isinstance(field, bool):
            message.add_boolean(field)
        else:
            message.add_string(field)
    transport._send_message(message)  # type: ignore[attr-defined]


def _offer_public_key_only(
    gateway: Gateway, public: paramiko.PKey
) -> tuple[paramiko.Transport, threading.Event]:
    """What anyone who has seen an authorized public key can do: ask whether the server would
    take it (a publickey request without a signature), then keep the connection open."""
    transport = paramiko.Transport(socket.create_connection(gateway.address, 5))
    transport.start_client(timeout=5)
    accepted = threading.Event()
    transport._handler_table[MSG_USERAUTH_PK_OK] = lambda _m: accepted.set()  # type: ignore[attr-defined]
    _send(transport, cMSG_SERVICE_REQUEST, "ssh-userauth")
    _send(
        transport,
        cMSG_USERAUTH_REQUEST,
        "mallory",
        "ssh-connection",
        "publickey",
        False,  # no signature: the private key is not needed for this question
        public.get_name(),
        public.asbytes(),
    )
    return transport, accepted


def test_public_key_without_signature_is_cut_at_the_login_limit() -> None:
    key = generate_ed25519()
    with Gateway(authorized_keys=[key], timeout=LOGIN_LIMIT).start() as gateway:
        transport, accepted = _offer_public_key_only(gateway, key)
        started = time.monotonic()
        try:
            assert accepted.wait(5), "the gateway did not answer the public-key query"
            while transport.is_active() and time.monotonic() - started < PATIENCE:
                time.sleep(0.05)
            held = time.monotonic() - started
            still_open = transport.is_active()
        finally:
            transport.close()
    assert not still_open, (
        f"a client holding only the public key was still connected after {held:.1f} s "
        f"(login limit {LOGIN_LIMIT} s)"
    )


OPTIONS = [
    ('from="10.0.0.0/8"', "from"),
    ("no-port-forwarding", "no-port-forwarding"),
    ('expiry-time="20200101"', "expiry-time"),
    ("restrict", "restrict"),
    ('permitlisten="localhost:8080"', "permitlisten"),
    ('restrict,command="echo hi, there"', "command"),
]


def _keys_file(tmp_path: Path, options: str) -> Path:
    good, limited = generate_ed25519(), generate_ed25519()
    file = tmp_path / "authorized_keys"
    file.write_text(
        f"{good.get_name()} {good.get_base64()} alice\n"
        f"{options} {limited.get_name()} {limited.get_base64()} bob\n"
    )
    return file


@pytest.mark.parametrize(("options", "name"), OPTIONS)
def test_key_line_with_options_is_refused(tmp_path: Path, options: str, name: str) -> None:
    file = _keys_file(tmp_path, options)
    try:
        loaded = load_authorized_keys(file)
    except ConfigError as err:
        assert "line 2" in err.message and name in err.message, err.message
        return
    pytest.fail(f"{len(loaded)} keys loaded; the options {options!r} of line 2 were ignored")


def test_gateway_command_refuses_options_with_exit_1(e2e: E2E, tmp_path: Path) -> None:
    file = _keys_file(tmp_path, 'from="10.0.0.0/8"')
    try:
        out = e2e.run(
            "gateway", "--listen", "127.0.0.1:0", "--authorized-keys", str(file), timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the gateway started with a from= option it cannot honour")
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert "line 2" in out.stderr and "from" in out.stderr, out.stderr
    assert "hint:" in out.stderr, out.stderr
