"""Controller errors, rooted in the shared hierarchy."""

from edgefleet.errors import EdgeFleetError, FailedPrecondition


class ControllerError(EdgeFleetError):
    """Root of errors raised by the controller."""


class StoreError(ControllerError):
    """The registry database failed or holds something it should not."""


class ConfigError(ControllerError):
    """The controller's configuration is invalid."""


class ListenError(ControllerError):
    """A server port could not be bound (in use, or not permitted)."""


class StaleWrite(ControllerError, FailedPrecondition):
    """A write refused because what it was computed from changed meanwhile: another replica
    stepped the rollout first, or this replica no longer holds the leader lease (fencing)."""
