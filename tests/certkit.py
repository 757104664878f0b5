"""A certificate and key for share.example.org, written as PEM files: the user's own pair for
``--tls-cert``/``--tls-key`` tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

NAME = "share.example.org"


def write_pair(tmp_path: Path, expires: datetime, *, other_key: bool = False) -> tuple[str, str]:
    """(cert path, key path) of a self-signed P-256 certificate valid until ``expires``;
    ``other_key`` writes a key that does not match the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(expires - timedelta(days=30))
        .not_valid_after(expires)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), False)
        .sign(key, hashes.SHA256())
    )
    served = ec.generate_private_key(ec.SECP256R1()) if other_key else key
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        served.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
