"""Why an update failed verification. All derive from ``edgefleet.errors.VerificationError``."""

from edgefleet.errors import Unavailable, VerificationError


class MetadataError(VerificationError):
    """Release metadata is malformed or inconsistent with what signed metadata promised."""


class BadSignature(MetadataError):
    """Metadata is not signed by a threshold of the keys trusted for its role."""


class MetadataExpired(MetadataError):
    """Metadata is past its expiry (a freeze attack, or a repository that stopped signing)."""


class RollbackDetected(MetadataError):
    """Metadata is older than a version this device already trusted."""


class TargetNotFound(VerificationError):
    """Signed targets metadata does not list the requested target."""


class MixAndMatch(VerificationError):
    """The target is signed but meant for another device profile, model or variant."""


class ArtifactMismatch(VerificationError):
    """Artifact bytes do not match the signed length or sha256."""


class ArtifactTooLong(ArtifactMismatch):
    """More bytes arrived than the signed length (endless-data attack)."""


class ArtifactTruncated(ArtifactMismatch):
    """Fewer bytes arrived than the signed length."""


class UpdateUnavailable(Unavailable):
    """The transport could not deliver metadata or an artifact."""
