"""Rollout errors, rooted in the controller hierarchy."""

from controller.errors import ControllerError
from edgefleet.errors import FailedPrecondition, InvalidInput


class RolloutError(ControllerError):
    """Root of errors raised by the rollout engine."""


class InvalidGate(RolloutError, InvalidInput):
    """A gate expression could not be parsed; the message says why."""


class InvalidRollout(RolloutError, InvalidInput):
    """A rollout spec, state or action is malformed."""


class CommandRejected(RolloutError, FailedPrecondition):
    """An operator command does not apply to the rollout's current phase."""
