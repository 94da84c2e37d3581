"""Serving errors, rooted in the controller's hierarchy."""

from controller.errors import ControllerError
from edgefleet.errors import InvalidInput, NotFound


class Overloaded(ControllerError):
    """The batching queue is full (maps to RESOURCE_EXHAUSTED)."""


class UnknownModel(NotFound, ControllerError):
    """No cloud model serves the requested task (maps to NOT_FOUND)."""


class MalformedFrame(InvalidInput, ControllerError):
    """A frame tensor or image cannot be decoded (maps to INVALID_ARGUMENT)."""


class ServingFailure(ControllerError):
    """The cloud model failed to load or run."""
