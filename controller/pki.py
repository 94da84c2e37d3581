"""The controller's certificate authority: issues its own TLS certificate and device certificates.

Keys are EC P-256 (what every gRPC TLS stack accepts). Private keys are written 0600 and
never logged. Device certificates name the device id as common name and carry clientAuth.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.enrollment import certificate_fingerprint
from edgefleet.errors import InvalidInput

log = logging.getLogger(__name__)

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=365)
DEVICE_VALIDITY = dt.timedelta(days=365)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 from the start."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    pem: str
    fingerprint: str
    serial: int
    not_after: dt.datetime


class CertificateAuthority:
    """Loads or creates ``ca.key``/``ca.pem`` and ``server.key``/``server.pem`` in a directory."""

    def __init__(
        self, directory: Path, server_names: tuple[str, ...] = (), ca_directory: Path | None = None
    ) -> None:
        """``ca_directory``: a read-only place (a mounted secret every replica shares) that
        must hold ``ca.key`` and ``ca.pem``; the server key and certificate, issued from that
        CA, and a copy of ``ca.pem`` are then kept in ``directory``."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if ca_directory is None:
            self._key, self.certificate = self._load_or_create_ca()
        else:
            self._key, self.certificate = self._load_shared_ca(ca_directory)
        self.server_key_pem, self.server_cert_pem = self._load_or_create_server(server_names)

    # -- CA ---------------------------------------------------------------------------------
    def _load_or_create_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path, cert_path = self.directory / "ca.key", self.directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise InvalidInput(f"{key_path} is not an EC private key")
            return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EdgeFleet controller CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        log.info("created certificate authority in %s", self.directory)
        return key, cert

    def _load_shared_ca(
        self, ca_directory: Path
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path, cert_path = ca_directory / "ca.key", ca_directory / "ca.pem"
        for path in (key_path, cert_path):
            if not path.is_file():
                raise InvalidInput(f"the secrets directory has no {path} (the shared CA)")
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidInput(f"{key_path} is not an EC private key")
        pem = cert_path.read_bytes()
        local = self.directory / "ca.pem"
        if not local.exists() or local.read_bytes() != pem:
            local.write_bytes(pem)
        return key, x509.load_pem_x509_certificate(pem)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def pin(self) -> str:
        """SHA-256 of the CA certificate (DER): what enrollment tokens carry."""
        return certificate_fingerprint(self.certificate.public_bytes(serialization.Encoding.DER))

    # -- controller's own TLS certificate ---------------------------------------------------
    def _load_or_create_server(self, extra_names: tuple[str, ...]) -> tuple[bytes, bytes]:
        key_path, cert_path = self.directory / "server.key", self.directory / "server.pem"
        names = sorted({"localhost", "127.0.0.1", "::1", socket.gethostname(), *extra_names})
        if key_path.exists() and cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if (
                _san_names(cert) >= set(names)
                and cert.not_valid_after_utc > _now()
                and _issued_by(cert, self.certificate)
            ):
                return key_path.read_bytes(), cert_path.read_bytes()
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            self._builder("EdgeFleet controller", key.public_key(), SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self._key, hashes.SHA256())
        )
        key_pem = _key_pem(key)
        # The chain (server, then CA) lets a new device find the CA it pinned.
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.certificate_pem.encode()
        write_private(key_path, key_pem)
        cert_path.write_bytes(chain)
        return key_pem, chain

    def _builder(
        self, common_name: str, public_key: ec.EllipticCurvePublicKey, validity: dt.timedelta
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )

    # -- device certificates ----------------------------------------------------------------
    def sign_device_csr(self, csr_pem: str, device_id: str) -> IssuedCertificate:
        """Check a device's CSR and issue its client certificate (common name = device id)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise InvalidInput("malformed certificate signing request") from exc
        if not csr.is_signature_valid:
            raise InvalidInput("certificate signing request has an invalid signature")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.key_size < 256:
            raise InvalidInput("certificate signing request must use an EC P-256 key")
        cert = (
            self._builder(device_id, public_key, DEVICE_VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"urn:edgefleet:device:{device_id}")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(self._key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return IssuedCertificate(
            pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            fingerprint=certificate_fingerprint(der),
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
        )


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in ext.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Signed by this CA (a server certificate left from another CA is issued again)."""
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
