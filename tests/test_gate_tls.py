"""The sans-IO TLS codec and the share's certificate, in process: a real ``ssl`` client talks to
the codec over memory BIOs, no sockets."""

from __future__ import annotations

import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from certkit import write_pair
from cryptography import x509

from safetunnel.errors import UsageError
from safetunnel.gate.tls import TlsCodec, TlsRefused
from safetunnel.sharing.tlscert import load_identity, make_identity, spki_pin

SOON = datetime.now(UTC) + timedelta(hours=1)


class Client:
    """An ``ssl`` client over memory BIOs that pins nothing but trusts only ``cadata``."""

    def __init__(self, cadata: str | None, hostname: str = "bastion.example.com") -> None:
        context = ssl.create_default_context(cadata=cadata)
        if cadata is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.inc, self.out, server_hostname=hostname)

    def step(self) -> bool:
        try:
            self.tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False


def handshake(codec: TlsCodec, client: Client) -> None:
    for _ in range(10):
        done = client.step()
        codec.receive(client.out.read())
        client.inc.write(codec.outgoing())
        if done and codec.handshake_done:
            return
    raise AssertionError("no handshake")


def served_cert_pem(identity_names: tuple[str, ...]) -> tuple[TlsCodec, str]:
    identity = make_identity(identity_names, SOON)
    codec = TlsCodec(identity.context)
    client = Client(None)
    handshake(codec, client)
    der = client.tls.getpeercert(binary_form=True)
    assert der is not None
    return codec, ssl.DER_cert_to_PEM_cert(der)


def test_handshake_then_data_both_ways_and_the_pin_matches_the_served_key() -> None:
    identity = make_identity(["bastion.example.com", "203.0.113.7"], SOON)
    codec = TlsCodec(identity.context)
    client = Client(None)
    handshake(codec, client)
    assert client.tls.version() in {"TLSv1.2", "TLSv1.3"}
    client.tls.write(b"GET / HTTP/1.1\r\n\r\n")
    assert codec.receive(client.out.read()) == b"GET / HTTP/1.1\r\n\r\n"
    codec.send(b"HTTP/1.1 200 OK\r\n\r\n")
    client.inc.write(codec.outgoing())
    assert client.tls.read(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    der = client.tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    assert spki_pin(cert) == identity.pin
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bastion.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["203.0.113.7"]
    assert cert.not_valid_after_utc == SOON.replace(microsecond=0)
    assert cert.not_valid_before_utc < datetime.now(UTC)


def test_a_client_that_checks_the_name_accepts_the_made_certificate() -> None:
    _, pem = served_cert_pem(("bastion.example.com",))
    codec = TlsCodec(make_identity(["bastion.example.com"], SOON).context)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(codec, Client(pem))  # another share's certificate: a different key
    identity = make_identity(["bastion.example.com"], SOON)
    codec = TlsCodec(identity.context)
    probe = Client(None)
    handshake(codec, probe)
    der = probe.tls.getpeercert(binary_form=True)
    assert der is not None
    trusted = TlsCodec(identity.context)
    handshake(trusted, Client(ssl.DER_cert_to_PEM_cert(der)))
    assert trusted.handshake_done


def test_plain_http_is_refused_and_nothing_comes_out() -> None:
    codec = TlsCodec(make_identity(["h.example"], SOON).context)
    with pytest.raises(TlsRefused) as caught:
        codec.receive(b"GET /?safetunnel_token=st_x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert "st_x" not in str(caught.value)
    assert isinstance(caught.value, OSError)  # the pumps treat it as a broken connection


def test_garbage_after_the_handshake_is_refused() -> None:
    codec = TlsCodec(make_identity(["h.example"], SOON).context)
    handshake(codec, Client(None))
    with pytest.raises(TlsRefused):
        codec.receive(b"\x17\x03\x03\x00\x20" + os.urandom(32))


def test_tls_1_2_is_the_minimum() -> None:
    assert make_identity(["h.example"], SOON).context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_close_sends_close_notify_and_the_remote_close_ends() -> None:
    codec = TlsCodec(make_identity(["h.example"], SOON).context)
    client = Client(None)
    handshake(codec, client)
    codec.close()
    alert = codec.outgoing()
    assert alert
    client.inc.write(alert)
    assert client.tls.read(10) == b""  # close_notify: a clean end, not a broken one
    other = TlsCodec(make_identity(["h.example"], SOON).context)
    peer = Client(None)
    handshake(other, peer)
    with pytest.raises(ssl.SSLWantReadError):
        peer.tls.unwrap()
    assert other.receive(peer.out.read()) == b""
    assert other.ended


def test_eof_before_any_byte_ends_without_error() -> None:
    codec = TlsCodec(make_identity(["h.example"], SOON).context)
    assert codec.receive(b"") == b""
    assert codec.ended and not codec.handshake_done
    with pytest.raises(TlsRefused):
        codec.send(b"too early")


def test_the_key_is_made_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    before = set(os.listdir("/tmp"))
    make_identity(["h.example"], SOON)
    assert list(tmp_path.iterdir()) == []
    assert set(os.listdir("/tmp")) - before == set()


def test_own_certificate_loads_and_says_its_names(tmp_path: Path) -> None:
    identity = load_identity(*write_pair(tmp_path, SOON))
    assert identity.pin is None
    assert identity.names == ("share.example.org",)
    assert identity.subject == "CN=share.example.org"
    handshake(TlsCodec(identity.context), Client(None))


def test_own_certificate_refusals_are_usage_errors(tmp_path: Path) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(UsageError, match="expired"):
        load_identity(*write_pair(tmp_path, past))
    with pytest.raises(UsageError, match="not the key"):
        load_identity(*write_pair(tmp_path, SOON, other_key=True))
    with pytest.raises(UsageError, match="cannot read"):
        load_identity(str(tmp_path / "missing.pem"), str(tmp_path / "k.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(UsageError, match="not a PEM"):
        load_identity(str(tmp_path / "junk.pem"), str(tmp_path / "k.pem"))
