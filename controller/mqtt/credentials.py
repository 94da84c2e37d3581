"""Device MQTT passwords and the Mosquitto password/ACL files.

Hashes use Mosquitto's own password-file format (``mosquitto_passwd`` writes the same):
``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt, iterations, 64)>``.
The controller stores only these hashes; the plaintext goes to the device once, at enrollment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from controller.errors import ConfigError
from controller.mqtt.acl import CONTROLLER_USERNAME, is_device_username, mosquitto_acl_text

DEFAULT_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
_HASH_BYTES = 64
_MAX_ITERATIONS = 10_000_000  # refuse absurd work factors from a corrupt file

PASSWORD_FILE_NAME = "passwd"
ACL_FILE_NAME = "acl"


def generate_password() -> str:
    """A fresh random device password (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Hash ``password`` in Mosquitto's ``$7$`` format with a random 12-byte salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash; False for a mismatch or a malformed hash."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not 0 < iterations <= _MAX_ITERATIONS or not salt or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def write_mosquitto_auth(
    directory: str | os.PathLike[str],
    controller_password: str,
    devices: Iterable[tuple[str, str]],
) -> tuple[Path, Path]:
    """Write ``passwd`` and ``acl`` for Mosquitto into ``directory``; return their paths.

    ``controller_password`` is the controller user's plaintext (it is hashed here);
    ``devices`` yields ``(device_id, password_hash)`` for every device that may connect —
    revoked devices are simply left out. Each file is replaced atomically with mode 0600, so
    a broker reloading on SIGHUP never sees a half-written file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{CONTROLLER_USERNAME}:{hash_password(controller_password)}"]
    seen = {CONTROLLER_USERNAME}
    for device_id, password_hash in devices:
        if not is_device_username(device_id):
            raise ConfigError(f"invalid device id for an MQTT user: {device_id!r}")
        if device_id in seen:
            raise ConfigError(f"duplicate MQTT user {device_id!r}")
        if not password_hash.startswith("$7$") or any(c in password_hash for c in ":\n\r"):
            raise ConfigError(f"password hash for {device_id!r} is not in $7$ format")
        seen.add(device_id)
        lines.append(f"{device_id}:{password_hash}")
    password_file = directory / PASSWORD_FILE_NAME
    acl_file = directory / ACL_FILE_NAME
    _write_atomic(password_file, "\n".join(lines) + "\n")
    _write_atomic(acl_file, mosquitto_acl_text())
    return password_file, acl_file


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
