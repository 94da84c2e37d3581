"""Enrollment tokens and certificate pins, shared by the controller (issues) and agent (parses).

A token printed by ``edgefleet device register`` reads ``<token_id>.<secret>.<ca_pin>``:
the controller stores only a hash of the secret; ``ca_pin`` is the SHA-256 of the controller
CA certificate (DER), which lets a new device trust the controller before it has any
certificate, as kubeadm's discovery hash does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from edgefleet.errors import InvalidInput

_TOKEN = re.compile(
    r"^(?P<id>[a-z0-9]{8})\.(?P<secret>[A-Za-z0-9_-]{32,64})\.(?P<pin>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class EnrollmentToken:
    token_id: str
    secret: str
    ca_pin: str

    def __str__(self) -> str:
        return f"{self.token_id}.{self.secret}.{self.ca_pin}"

    @property
    def credential(self) -> str:
        """The part sent to the controller (the pin stays on the device)."""
        return f"{self.token_id}.{self.secret}"

    @classmethod
    def new(cls, ca_pin: str) -> EnrollmentToken:
        return cls(token_id=secrets.token_hex(4), secret=secrets.token_urlsafe(32), ca_pin=ca_pin)

    @classmethod
    def parse(cls, text: str) -> EnrollmentToken:
        match = _TOKEN.match(text.strip())
        if not match:
            raise InvalidInput(
                "malformed enrollment token: expected <id>.<secret>.<ca-pin> "
                "as printed by `edgefleet device register`"
            )
        return cls(match["id"], match["secret"], match["pin"])


def split_credential(credential: str) -> tuple[str, str]:
    """``<token_id>.<secret>`` → (token_id, secret); raises InvalidInput when malformed."""
    token_id, _, secret = credential.strip().partition(".")
    if not token_id or not secret or "." in secret:
        raise InvalidInput("malformed enrollment token")
    return token_id, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def certificate_fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER encoding, hex."""
    return hashlib.sha256(der).hexdigest()
