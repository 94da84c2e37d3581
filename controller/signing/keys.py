"""Private signing keys on disk, one PEM (PKCS#8) file per key, mode 0600.

Layout: ``{keys_dir}/{role}/{keyid}.pem`` (directories 0700). Ed25519 keys only. A key file
may be encrypted with a passphrase (do that for offline root keys); online keys (targets,
snapshot, timestamp) are stored unencrypted so the controller can sign unattended. Key
material is never logged or shown in ``repr``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Key

from controller.signing.errors import KeyLoadError, KeyNotFound, SigningError

logger = logging.getLogger(__name__)

TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")
KEY_SUFFIX = ".pem"


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signer(path: str | Path, passphrase: bytes | None = None) -> CryptoSigner:
    """Load one private key file (e.g. an offline root key given by path)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise KeyNotFound(f"no key file at {path}") from exc
    except OSError as exc:
        raise KeyLoadError(f"cannot read key file {path}: {exc}") from exc
    try:
        private = load_pem_private_key(data, passphrase)
    except (TypeError, ValueError) as exc:
        # cryptography's message never contains key material, but keep ours generic anyway
        if b"ENCRYPTED" in data:
            hint = "missing or wrong passphrase"
        elif passphrase is not None:
            hint = "a passphrase was given but the key is not encrypted"
        else:
            hint = "malformed key"
        raise KeyLoadError(f"cannot load key file {path}: {hint}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyLoadError(f"key file {path} does not hold an Ed25519 private key")
    return CryptoSigner(private)


class KeyStore:
    """Directory of private keys grouped by TUF role."""

    def __init__(self, keys_dir: str | Path) -> None:
        self.dir = Path(keys_dir)

    def __repr__(self) -> str:
        return f"KeyStore({str(self.dir)!r})"

    def _role_dir(self, role: str) -> Path:
        if role not in TOP_LEVEL_ROLES:
            raise SigningError(f"unknown role {role!r}; expected one of {TOP_LEVEL_ROLES}")
        return self.dir / role

    def key_path(self, role: str, keyid: str) -> Path:
        return self._role_dir(role) / f"{keyid}{KEY_SUFFIX}"

    def generate(self, role: str, passphrase: bytes | None = None) -> CryptoSigner:
        """Create a new Ed25519 key for ``role``; return its signer (public key inside)."""
        role_dir = self._role_dir(role)
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            role_dir.mkdir(mode=0o700, exist_ok=True)
            private = Ed25519PrivateKey.generate()
            signer = CryptoSigner(private)
            encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
            pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
            _write_private(self.key_path(role, signer.public_key.keyid), pem)
        except OSError as exc:
            raise SigningError(f"cannot write a {role} key under {self.dir}: {exc}") from exc
        logger.info("generated %s key %s", role, signer.public_key.keyid[:16])
        return signer

    def keyids(self, role: str) -> list[str]:
        role_dir = self._role_dir(role)
        if not role_dir.is_dir():
            return []
        return sorted(p.name[: -len(KEY_SUFFIX)] for p in role_dir.glob(f"*{KEY_SUFFIX}"))

    def signers(
        self,
        role: str,
        keyids: Iterable[str] | None = None,
        passphrase: bytes | None = None,
    ) -> list[CryptoSigner]:
        """Load the role's private keys (only ``keyids`` if given; absent ones are skipped)."""
        wanted = set(self.keyids(role)) if keyids is None else set(keyids)
        found = [k for k in self.keyids(role) if k in wanted]
        return [load_signer(self.key_path(role, k), passphrase) for k in found]

    def remove(self, role: str, keyid: str) -> None:
        """Delete a retired key file."""
        with contextlib.suppress(FileNotFoundError):
            self.key_path(role, keyid).unlink()


def create_keys(
    keys_dir: str | Path,
    roles: Sequence[str] = TOP_LEVEL_ROLES,
    root_threshold: int = 1,
    root_key_count: int | None = None,
    root_passphrase: bytes | None = None,
) -> dict[str, list[Key]]:
    """Generate keys for ``roles``: ``max(root_threshold, root_key_count)`` root keys, one
    key for each other role. Returns the public keys per role."""
    count = max(root_threshold, root_key_count or root_threshold)
    if root_threshold < 1 or (root_key_count is not None and root_key_count < root_threshold):
        raise SigningError(f"root threshold {root_threshold} needs 1..{count} root keys")
    store = KeyStore(keys_dir)
    public: dict[str, list[Key]] = {}
    for role in roles:
        n = count if role == "root" else 1
        passphrase = root_passphrase if role == "root" else None
        public[role] = [store.generate(role, passphrase).public_key for _ in range(n)]
    return public
