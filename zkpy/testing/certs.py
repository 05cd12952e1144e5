"""Certificates for TLS tests: a CA, and PEM key/trust stores it signs.

Both zkpy and Apache ZooKeeper 3.8 read PEM stores (a PKCS#8 private key and
its certificate in one file; the trusted CA certificates in another), so one
pair of files serves either kind::

    ca = CertificateAuthority("ensemble CA")
    settings = ca.stores(tmp_dir, "member", "127.0.0.1", prefix="ssl.quorum")
    # {"ssl.quorum.keyStore.location": ..., "ssl.quorum.trustStore.location": ...}

Certificates name their address as a subjectAltName IP (what hostname
verification checks). Nothing here is fit for production use.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CertificateAuthority"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (builder.not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .serial_number(x509.random_serial_number()))


class CertificateAuthority:
    def __init__(self, cn: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _validity(x509.CertificateBuilder()).subject_name(_name(cn)).issuer_name(
            _name(cn)).public_key(self.key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(
            self.key, hashes.SHA256())

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, ip: str) -> tuple[bytes, bytes]:
        """(PKCS#8 private key PEM, certificate PEM) for ``cn`` at address ``ip``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _validity(x509.CertificateBuilder()).subject_name(_name(cn)).issuer_name(
            self.cert.subject).public_key(key.public_key()).add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False).sign(self.key, hashes.SHA256())
        return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                cert.public_bytes(serialization.Encoding.PEM))

    def stores(self, directory: Path, name: str, ip: str, prefix: str = "ssl.quorum",
               trust: CertificateAuthority | None = None) -> dict[str, str]:
        """Write ``<name>-key.pem`` (a key and certificate this CA signs) and
        ``<name>-trust.pem`` (``trust``'s certificate, this CA's by default);
        return the ``<prefix>.keyStore.*`` / ``<prefix>.trustStore.*`` settings."""
        key, cert = self.issue(name, ip)
        keystore = directory / f"{name}-key.pem"
        keystore.write_bytes(key + cert)
        truststore = directory / f"{name}-trust.pem"
        truststore.write_bytes((trust or self).pem())
        return {f"{prefix}.keyStore.location": str(keystore),
                f"{prefix}.keyStore.type": "PEM",
                f"{prefix}.trustStore.location": str(truststore),
                f"{prefix}.trustStore.type": "PEM"}
