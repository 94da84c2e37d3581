"""Errors raised while managing signing keys and TUF release metadata."""

from controller.errors import ControllerError
from edgefleet.errors import FailedPrecondition, InvalidInput, NotFound


class SigningError(ControllerError):
    """Keys or release metadata could not be created, loaded or signed."""


class KeyNotFound(SigningError, NotFound):
    """No private key for a role (or at a path) is available."""


class KeyLoadError(SigningError):
    """A private key file is unreadable, malformed or its passphrase is wrong."""


class ThresholdNotMet(SigningError, FailedPrecondition):
    """Fewer signing keys are available for a role than its threshold requires."""


class MetadataNotFound(SigningError, NotFound):
    """The repository holds no metadata file by that name."""


class InvalidTarget(SigningError, InvalidInput):
    """A target path or its custom fields are malformed."""
