"""Errors shared by both sides. Each package roots its own hierarchy in EdgeFleetError."""


class EdgeFleetError(Exception):
    """Root of every error EdgeFleet raises on purpose."""


class InvalidInput(EdgeFleetError):
    """Something a user or a peer sent is malformed or out of range."""


class NotFound(EdgeFleetError):
    """A named thing (device, profile, model, ...) does not exist."""


class AlreadyExists(EdgeFleetError):
    """A thing with that name or id exists already."""


class Unauthenticated(EdgeFleetError):
    """A caller could not prove who it is (bad token, unknown or revoked certificate)."""


class PermissionDenied(EdgeFleetError):
    """The caller is known but may not do this."""


class FailedPrecondition(EdgeFleetError):
    """The request is well-formed but the system is not in a state to accept it."""


class ResourceExhausted(EdgeFleetError):
    """The caller sent too much or too often (a rate or size bound); it may retry later."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(EdgeFleetError):
    """A peer (controller, broker, store) could not be reached in time."""


class DeadlineExceeded(Unavailable):
    """An answer did not come within the caller's deadline."""


class VerificationError(EdgeFleetError):
    """Signed metadata or an artifact failed verification."""
