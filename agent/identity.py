"""The device's identity: its private key (never leaves the device), certificate and secrets.

Everything lives in the agent's data directory; secret files are 0600 and written atomically.
"""

from __future__ import annotations

import _ssl  # the public ssl module exposes the certificate chain only from 3.13
import json
import logging
import os
import socket
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.errors import AgentError, NotEnrolled
from edgefleet.enrollment import certificate_fingerprint

log = logging.getLogger(__name__)

KEY_FILE = "device.key"
CERT_FILE = "device.pem"
CA_FILE = "ca.pem"
IDENTITY_FILE = "identity.json"
TUF_DIR = "tuf"  # python-tuf's trusted metadata; root.json in it is pinned at enrollment
TUF_ROOT_FILE = "root.json"


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomic write (temp + fsync + rename) with the final mode set from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def pin_tuf_root(data_dir: Path, root_json: bytes) -> None:
    """Keep the TUF root received at enrollment (over the CA-pinned channel) as the trust
    anchor: python-tuf accepts only newer roots that chain from it. Without one (a
    controller too old to send it) the device refuses every update."""
    if not root_json:
        log.warning("the controller sent no TUF root at enrollment: updates will be refused")
        return
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(root_json)
        if not isinstance(md.signed, Root):
            raise ValueError(f"a {md.signed.type!r} document, not a root")
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)  # self-signed
    except (ValueError, KeyError, TypeError, RepositoryError) as exc:
        raise AgentError(f"the controller sent an invalid TUF root at enrollment: {exc}") from exc
    tuf_dir = data_dir / TUF_DIR
    tuf_dir.mkdir(mode=0o700, exist_ok=True)
    write_file(tuf_dir / TUF_ROOT_FILE, root_json, 0o600)


@dataclass(frozen=True)
class Identity:
    device_id: str
    controller: str  # HOST:PORT of the controller's mutual-TLS device port
    profile: str
    mqtt_url: str
    mqtt_username: str
    mqtt_password: str = field(repr=False)
    mqtt_topic_prefix: str = ""

    def save(self, data_dir: Path) -> None:
        write_file(data_dir / IDENTITY_FILE, json.dumps(asdict(self), indent=2).encode(), 0o600)

    @classmethod
    def load(cls, data_dir: Path) -> Identity:
        path = data_dir / IDENTITY_FILE
        if not path.exists():
            raise NotEnrolled(
                f"{data_dir} holds no device identity: run `edgefleet-agent enroll` first"
            )
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise AgentError(f"{path} is unreadable or corrupt: {exc}") from exc


@dataclass(frozen=True)
class Credentials:
    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    ca_pem: bytes

    @classmethod
    def load(cls, data_dir: Path) -> Credentials:
        try:
            return cls(
                key_pem=(data_dir / KEY_FILE).read_bytes(),
                cert_pem=(data_dir / CERT_FILE).read_bytes(),
                ca_pem=(data_dir / CA_FILE).read_bytes(),
            )
        except FileNotFoundError as exc:
            raise NotEnrolled(
                f"{data_dir} lacks {Path(str(exc.filename)).name}: enroll first"
            ) from exc


def create_key_and_csr() -> tuple[bytes, str]:
    """A fresh EC P-256 private key (PEM, to be saved 0600) and a CSR for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet-device")]))
        .sign(key, hashes.SHA256())
    )
    return pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AgentError(f"controller address must be HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def fetch_pinned_ca(address: str, pin: str, timeout_s: float = 10.0) -> bytes:
    """Find the controller's CA certificate by its pin before trusting anything.

    The controller presents its certificate chain (server, CA). Unverified, it is only a
    claim: we keep the CA whose SHA-256 equals the pin from the enrollment token, and check
    that it really issued the server certificate.
    """
    host, port = split_address(address)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            chain = [c.public_bytes(_ssl.ENCODING_DER) for c in tls._sslobj.get_unverified_chain()]  # type: ignore[attr-defined]
    except OSError as exc:
        raise ConnectionError(f"cannot reach the controller at {address}: {exc}") from exc
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    pinned = [c for c, der in zip(certs, chain, strict=True) if certificate_fingerprint(der) == pin]
    if not pinned or not certs:
        raise AgentError(
            f"the controller at {address} does not present the CA pinned in the token "
            "(wrong address, or someone in between)"
        )
    try:
        certs[0].verify_directly_issued_by(pinned[0])
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AgentError("the controller's certificate is not issued by the pinned CA") from exc
    return pinned[0].public_bytes(serialization.Encoding.PEM)
