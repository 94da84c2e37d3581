"""Errors raised by artifact stores."""

from controller.errors import ControllerError
from edgefleet.errors import InvalidInput, NotFound


class ArtifactStoreError(ControllerError):
    """The artifact store failed to read or write an artifact."""


class ArtifactNotFound(ArtifactStoreError, NotFound):
    """No artifact with that sha256 is stored."""


class InvalidDigest(ArtifactStoreError, InvalidInput):
    """A sha256 is not 64 lowercase hex digits, or a byte range is out of bounds."""


class DigestMismatch(ArtifactStoreError):
    """The content written does not hash to the sha256 the caller expected."""
