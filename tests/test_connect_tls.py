"""connect's direct TLS dialer against a small in-test TLS server (a cryptography-made cert).

The server side of TLS at the gate is built elsewhere; here a threaded ``ssl`` echo server
stands in for it and records what arrived, so "nothing is sent to a wrong key" is checked on the
server's own record.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from safetunnel import tokens
from safetunnel.errors import HostKeyError
from safetunnel.receiving.receiver import Receiver
from safetunnel.receiving.tlsdial import TlsDialer, TlsPinMismatch, spki_pin
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now


def make_cert(tmp: Path, name: str) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, spki_pin(cert.public_bytes(serialization.Encoding.DER))


class EchoTLS:
    """Accepts TLS connections; records every plaintext byte and echoes it back; EOF ends one."""

    def __init__(self, cert: Path, key: Path, version: ssl.TLSVersion | None = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if version is not None:
            context.minimum_version = context.maximum_version = version
        self.received = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._context = context
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                while data := conn.recv(65536):
                    self.received += data
                    conn.sendall(data)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def certs(tmp_path: Path) -> tuple[tuple[Path, Path, str], tuple[Path, Path, str]]:
    return make_cert(tmp_path, "right"), make_cert(tmp_path, "other")


@pytest.fixture
def server(certs: tuple[tuple[Path, Path, str], ...]) -> Iterator[EchoTLS]:
    cert, key, _ = certs[0]
    made = EchoTLS(cert, key)
    yield made
    made.close()


def ticket(port: int, pin: str) -> Ticket:
    return Ticket(
        ssh_host="localhost",
        ssh_port=None,
        host_key="SHA256:" + "A" * 43,
        key_type="ssh-ed25519",
        remote_bind="0.0.0.0",
        remote_port=port,
        protocol="tcp",
        expires_at=utc_now() + datetime.timedelta(minutes=5),
        token=tokens.generate(),
        tls_pin=pin,
    )


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(data)
        with contextlib.suppress(OSError):  # a refused connection may be gone already
            client.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := client.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass  # a refused connection may end with a reset
        return out


def test_the_right_pin_relays_after_the_preamble(server: EchoTLS, certs: tuple) -> None:
    made = ticket(server.port, certs[0][2])
    receiver = Receiver(made, TlsDialer(("127.0.0.1", server.port), made.tls_pin or "", print))
    _, port = receiver.start()
    try:
        big = bytes(range(256)) * 4096  # 1 MiB: more than any buffer on the way
        preamble = f"SAFETUNNEL {made.token}\n".encode()
        assert exchange(port, b"hello") == preamble + b"hello"
        assert exchange(port, big) == preamble + big
    finally:
        receiver.close()
    assert bytes(server.received).startswith(preamble)


def test_a_wrong_pin_sends_nothing_and_stops_before_listening(
    server: EchoTLS, certs: tuple
) -> None:
    wrong = certs[1][2]
    made = ticket(server.port, wrong)
    dialer = TlsDialer(("127.0.0.1", server.port), wrong, print)
    receiver = Receiver(made, dialer)
    with pytest.raises(TlsPinMismatch) as caught:
        receiver.start()
    assert caught.value.exit_code == 4 and isinstance(caught.value, HostKeyError)
    assert certs[0][2] in caught.value.message and wrong in caught.value.message
    assert made.token not in caught.value.message
    receiver.close()
    assert bytes(server.received) == b""  # the preamble never went to the wrong key


def test_a_key_changed_after_start_ends_the_receiver_with_exit_4(
    certs: tuple, tmp_path: Path
) -> None:
    right = EchoTLS(*certs[0][:2])
    made = ticket(right.port, certs[0][2])
    receiver = Receiver(made, TlsDialer(("127.0.0.1", right.port), certs[0][2], print))
    _, port = receiver.start()
    right.close()
    impostor = EchoTLS(*certs[1][:2])
    receiver._dialer._address = ("127.0.0.1", impostor.port)  # type: ignore[attr-defined]
    try:
        assert exchange(port, b"secret") == b""
        assert receiver.wait(10.0)
        assert isinstance(receiver.error, TlsPinMismatch)
    finally:
        receiver.close()
        impostor.close()
    assert bytes(impostor.received) == b""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(certs: tuple) -> None:
    old = EchoTLS(*certs[0][:2], version=ssl.TLSVersion.TLSv1_1)
    try:
        dialer = TlsDialer(("127.0.0.1", old.port), certs[0][2], print)
        with pytest.raises(Exception) as caught:
            dialer.start()
        assert "cannot reach the share" in str(caught.value)
    finally:
        old.close()
