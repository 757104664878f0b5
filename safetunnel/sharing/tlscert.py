"""The certificate a share serves TLS with: made for the share in memory, or the user's own.

A made certificate has a fresh P-256 key, the SSH host's names in its subjectAltName and a
validity that ends with the share. Recipients cannot check it against a CA, so they pin its
public key instead: :attr:`TlsIdentity.pin` is curl's ``--pinnedpubkey`` form,
``sha256//`` + base64 of the SHA-256 of the DER SubjectPublicKeyInfo.

The private key never touches a file system. ``ssl.SSLContext.load_cert_chain`` only reads
paths, so the PEM goes into an anonymous memory file (``memfd_create``): it has no name in any
directory, lives in this process's memory only, and is read once through this process's own
``/proc/self/fd/N`` (which no other user can open) and closed at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from safetunnel.errors import UsageError
from safetunnel.gate.tls import server_context

# Clocks of recipients run a little behind or ahead; a minute covers ordinary drift.
BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class TlsIdentity:
    """What a share serves TLS with, and what the user is told about it.

    ``pin`` is None for the user's own certificate: a CA vouches for it, nobody pins it."""

    context: ssl.SSLContext
    pin: str | None
    subject: str
    names: tuple[str, ...]
    not_after: datetime


def spki_pin(cert: x509.Certificate) -> str:
    """curl's ``--pinnedpubkey`` value for the certificate's public key."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def make_identity(names: Iterable[str], not_after: datetime) -> TlsIdentity:
    """A certificate and key made now for ``names`` (host names or addresses), valid from a
    minute ago until ``not_after``; both only in memory."""
    unique = tuple(dict.fromkeys(name for name in names if name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique[0][:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(name) for name in unique]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = server_context()
    with _memory_file(cert.public_bytes(serialization.Encoding.PEM) + key_pem) as path:
        context.load_cert_chain(path)
    return TlsIdentity(context, spki_pin(cert), subject.rfc4514_string(), unique, not_after)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name)


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path that reads ``data`` from anonymous memory; gone when the block ends."""
    fd = os.memfd_create("safetunnel-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def load_identity(cert_file: str, key_file: str, now: datetime | None = None) -> TlsIdentity:
    """The user's own certificate and key; UsageError (exit 2) when they cannot serve."""
    try:
        with open(cert_file, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except OSError as err:
        raise UsageError(f"cannot read --tls-cert {cert_file}: {err.strerror}") from None
    except ValueError:
        raise UsageError(f"--tls-cert {cert_file} is not a PEM certificate") from None
    not_after = cert.not_valid_after_utc
    if not_after <= (now or datetime.now(UTC)):
        raise UsageError(
            f"the certificate in {cert_file} expired at {not_after:%Y-%m-%d %H:%M} UTC",
            hint="Renew it, or leave out --tls-cert/--tls-key to serve a certificate made "
            "for this share.",
        )
    context = server_context()
    try:
        # An encrypted key would make OpenSSL prompt on the terminal; an empty one just fails.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except OSError as err:
        raise UsageError(f"cannot use --tls-key {key_file}: {_why(err)}") from None
    names = _names_of(cert)
    return TlsIdentity(context, None, cert.subject.rfc4514_string(), names, not_after)


def _why(err: OSError) -> str:
    if isinstance(err, ssl.SSLError):
        if "KEY_VALUES_MISMATCH" in str(err):
            return "it is not the key of the certificate in --tls-cert"
        return "not an unencrypted PEM private key"
    return err.strerror or "unreadable"


def _names_of(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)
