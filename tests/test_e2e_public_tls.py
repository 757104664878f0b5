"""``--public`` serves TLS: a real sshd with ``GatewayPorts clientspecified``, the console script,
and curl as the recipient. The pin in the ``started`` event is the served key's; curl pinning it
gets through, curl pinning another key and plain HTTP are refused before the service hears a
byte; ``--no-tls`` needs the typed answer; ``--tls-cert`` serves the user's certificate; the made
key never reaches a file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from certkit import write_pair
from cryptography import x509
from e2e import E2E, Pty, bg_share_argv, sshd_args, token_from, wait_for, wait_until
from engine_pin import ENGINES
from services import echo, http_keepalive
from sshd import SSHD, SSHDFactory

from safetunnel.sharing.tlscert import spki_pin

pytestmark = [pytest.mark.sshd, pytest.mark.skipif(not shutil.which("curl"), reason="no curl")]

OTHER_PIN = "sha256//" + "A" * 43 + "="


@pytest.fixture
def public_sshd(sshd_factory: SSHDFactory) -> SSHD:
    return sshd_factory(gateway_ports="clientspecified")


def curl(url: str, token: str, *options: str) -> subprocess.CompletedProcess[str]:
    """curl with the token through stdin (never in its argv), as the printed line does."""
    return subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "%{http_code}", "-H", "@-", *options, url],
        input=f"X-Safetunnel-Token: {token}\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


def served_pin(port: int) -> str:
    """The pin of the key the share serves, computed here from its certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return spki_pin(x509.load_der_x509_certificate(der))


@pytest.mark.parametrize("engine", ENGINES)
def test_public_share_serves_tls_reached_with_the_pin_only(
    e2e: E2E, public_sshd: SSHD, engine: str
) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--engine", engine, "--public", via=public_sshd, ttl="60s")
    started = e2e.started(proc)
    port, token, pin = started["remote_port"], started["token"], started["tls_pin"]
    assert started["url"].startswith("https://")
    assert pin == served_pin(port)
    url = f"https://127.0.0.1:{port}/"

    wrong = curl(url, token, "--pinnedpubkey", OTHER_PIN, "--insecure")
    assert wrong.returncode != 0 and not wrong.stdout.endswith("200"), wrong
    plain = curl(f"http://127.0.0.1:{port}/", token)
    assert not plain.stdout.endswith("200"), plain
    assert bytes(service.received) == b""  # neither reached the service

    right = curl(url, token, "--pinnedpubkey", pin, "--insecure")
    assert right.stdout.endswith("200"), right
    assert wait_for(lambda: b"GET / HTTP/1.1" in service.received)
    assert token.encode() not in service.received
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr
    assert '"reason":"tls"' in proc.stdout, proc.stdout


def test_the_printed_curl_line_pins_and_works(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--public", via=public_sshd, ttl="60s", as_json=False)
    wait_until(lambda: "Ctrl-C to stop" in proc.stderr, 30, "the started block")
    started = proc.stderr.split("Sharing", 1)[1]
    assert re.search(r"^  tls pin +sha256//\S{44}$", started, re.M), started
    e2e.tokens.append(token := token_from(started))
    line = next(x for x in started.splitlines() if "curl -H @-" in x)
    command = line.strip().removeprefix("curl").strip()
    assert "--pinnedpubkey 'sha256//" in command and "--insecure" in command
    assert command.startswith("echo 'X-Safetunnel-Token: ")
    url = command.rsplit(" ", 1)[1]
    port = url.rstrip("/").rsplit(":", 1)[1]
    command = command.replace(url, f"https://127.0.0.1:{port}/")  # the sandbox host's name
    out = subprocess.run(
        ["sh", "-c", command + " -s -o /dev/null -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout == "200", out
    assert token.encode() not in service.received
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr


def test_no_tls_needs_the_typed_answer(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    refused = e2e.share(service.port, "--public", "--no-tls", via=public_sshd)
    assert refused.wait(30) == 3, refused.stderr
    assert "clear text" in refused.stderr
    assert refused.stdout == ""
    argv = ("--public", "--no-tls", "--confirm-port", str(service.port))
    proc = e2e.share(service.port, *argv, via=public_sshd, ttl="60s")
    started = e2e.started(proc)
    assert "tls_pin" not in started and started["url"].startswith("http://")
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr


def test_tls_flags_contradicting_are_usage_errors(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    for argv in (
        ("--tls", "--no-tls"),
        ("--tls-cert", "/nonexistent.pem"),
        ("--no-tls", "--tls-cert", "/x", "--tls-key", "/y"),
    ):
        out = e2e.run(*["share", str(service.port), "--yes", *argv])
        assert out.returncode == 2, (argv, out.stderr)
    out = e2e.run("share", str(service.port), "--yes", "--tls-cert", "/no.pem", "--tls-key", "/k")
    assert out.returncode == 2 and "cannot read --tls-cert" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_own_certificate_is_served(e2e: E2E, public_sshd: SSHD, tmp_path: Path) -> None:
    service = e2e.service(http_keepalive)
    cert, key = write_pair(tmp_path, datetime.now(UTC) + timedelta(days=5))
    argv = ("--public", "--tls-cert", cert, "--tls-key", key)
    proc = e2e.share(service.port, *argv, via=public_sshd, ttl="60s")
    started = e2e.started(proc)
    assert "tls_pin" not in started and started["url"].startswith("https://")
    port = started["remote_port"]
    resolve = f"share.example.org:{port}:127.0.0.1"
    url = f"https://share.example.org:{port}/"
    ok = curl(url, started["token"], "--cacert", cert, "--resolve", resolve)
    assert ok.stdout.endswith("200"), ok
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr
    (tmp_path / "old").mkdir()
    old_cert, old_key = write_pair(tmp_path / "old", datetime.now(UTC) - timedelta(days=1))
    out = e2e.run("share", str(service.port), "--yes", "--tls-cert", old_cert, "--tls-key", old_key)
    assert out.returncode == 2 and "expired" in out.stderr, out.stderr


def test_made_key_never_reaches_a_file_and_ticket_file_follows_token_file(
    e2e: E2E, public_sshd: SSHD, tmp_path: Path
) -> None:
    service = e2e.service(http_keepalive)
    token_file = tmp_path / "files" / "token"
    token_file.parent.mkdir()
    ticket_file = token_file.with_name("token.ticket")
    e2e.token_files += [token_file, ticket_file]
    before = set(_tree(e2e.sandbox.dirs))
    argv = ("--public", "--token-file", str(token_file))
    proc = e2e.share(service.port, *argv, via=public_sshd, ttl="60s")
    started = e2e.started(proc)
    assert "token" not in started and "ticket" not in started and "tls_pin" in started
    assert wait_for(ticket_file.exists)
    assert os.stat(ticket_file).st_mode & 0o777 == 0o600
    ticket = ticket_file.read_text().strip()
    e2e.tickets.append(ticket)
    e2e.tokens.append(token_file.read_text().strip())
    assert ticket.startswith("stt1_")
    assert set(token_file.parent.iterdir()) == {token_file, ticket_file}
    for path in set(_tree(e2e.sandbox.dirs)) - before:
        if path.is_file():  # the control socket is not
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    # Nothing the share holds open is a file with a name: the key went through a memfd, closed.
    for fd in Path(f"/proc/{proc.proc.pid}/fd").iterdir():
        target = os.readlink(fd)
        assert "memfd:" not in target and not target.endswith(".pem"), target
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr
    assert not token_file.exists() and not ticket_file.exists()


def _tree(roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            found += [Path(dirpath) / name for name in files]
    return found


def tls_client(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin is checked instead, by the caller
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), 10))


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_on_a_loopback_share_carries_raw_tcp_both_ways(
    e2e: E2E, sshd: SSHD, engine: str
) -> None:
    service = e2e.service(echo)
    argv = ("--engine", engine, "--tls", "--protocol", "tcp")
    proc = e2e.share(service.port, *argv, via=sshd, ttl="60s")
    started = e2e.started(proc)
    assert started["remote_bind"] == "127.0.0.1" and "tls_pin" in started
    payload = os.urandom(300_000)  # several TLS records each way, after the gate pipes
    with tls_client(started["remote_port"]) as conn:
        der = conn.getpeercert(binary_form=True)
        assert der is not None
        assert spki_pin(x509.load_der_x509_certificate(der)) == started["tls_pin"]
        conn.sendall(f"SAFETUNNEL {started['token']}\n".encode() + payload)
        echoed = b""
        while len(echoed) < len(payload):
            chunk = conn.recv(65536)
            assert chunk, "closed early"
            echoed += chunk
    assert echoed == payload
    assert bytes(service.received) == payload  # the preamble never reached the service
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr


def test_tls_through_the_built_in_gateway(e2e: E2E) -> None:
    service = e2e.service(http_keepalive)
    proc = e2e.share(service.port, "--tls", ttl="60s")
    started = e2e.started(proc)
    url = f"https://127.0.0.1:{started['remote_port']}/"
    assert started["url"].startswith(url)
    ok = curl(url, started["token"], "--pinnedpubkey", started["tls_pin"], "--insecure")
    assert ok.stdout.endswith("200"), ok
    proc.proc.terminate()
    assert proc.wait(20) == 0, proc.stderr


def test_background_tls_share_shows_the_pin_its_detached_process_serves(
    e2e: E2E, shared_sshd: SSHD
) -> None:
    service = e2e.service(http_keepalive)
    human = e2e.ok(*bg_share_argv(service.port, "2m", "--tls", via=shared_sshd), timeout=60)
    text = " ".join(human.stderr.split())
    e2e.tokens.append(token_from(human.stderr))
    pins = re.findall(r"tls pin (sha256//[A-Za-z0-9+/]{43}=)", text)
    port = re.search(r"at 127\.0\.0\.1:(\d+) on .*\(tunnel (st-[0-9a-f]{6})\)", text)
    assert port is not None and len(pins) == 1, text
    assert pins[0] == served_pin(int(port.group(1)))
    e2e.cli_ok("kill", port.group(2))


def test_the_confirmation_shows_the_pin_that_is_then_served(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    share = Pty(
        ["share", str(service.port), "--ttl", "30s", "--public", *sshd_args(public_sshd)], e2e.env
    )
    try:
        confirm = share.expect("Type the port number")  # --public is risky: the typed answer
        pin = re.search(r"^  tls pin +(sha256//\S{44})\r?$", confirm, re.M)
        assert pin is not None, confirm
        share.send(str(service.port))
        text = share.expect("Ctrl-C to stop")
        e2e.tokens.append(token_from(text))
        port = re.search(r" at 0\.0\.0\.0:(\d+)", text)
        assert port is not None, text
        assert served_pin(int(port.group(1))) == pin.group(1)
        share.proc.send_signal(signal.SIGTERM)
        assert share.wait() == 0, share.text
    finally:
        share.close()


def test_no_tls_is_typed_at_the_prompt_saying_clear_text(e2e: E2E, public_sshd: SSHD) -> None:
    service = e2e.service(http_keepalive)
    argv = ["share", str(service.port), "--ttl", "30s", "--public", "--no-tls", "--yes"]
    share = Pty([*argv, *sshd_args(public_sshd)], e2e.env)
    try:
        confirm = share.expect("Type the port number")  # --yes --public does not replace it
        assert "clear text" in confirm and "tls pin" not in confirm
        share.send(str(service.port))
        text = share.expect("Ctrl-C to stop")
        e2e.tokens.append(token_from(text))
        assert "http://" in text and "https://" not in text
        share.proc.send_signal(signal.SIGTERM)
        assert share.wait() == 0, share.text
    finally:
        share.close()
