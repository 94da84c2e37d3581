"""Serving errors, rooted in the controller's hierarchy and mapped by the shared status table."""

from controller.errors import ControllerError
from edgefleet.errors import DeadlineExceeded, InvalidInput, NotFound, ResourceExhausted


class Overloaded(ResourceExhausted, ControllerError):
    """The batching queue is full (RESOURCE_EXHAUSTED)."""


class AnswerTimeout(DeadlineExceeded, ControllerError):
    """The cloud model did not answer within the caller's deadline (DEADLINE_EXCEEDED)."""


class UnknownModel(NotFound, ControllerError):
    """No cloud model serves the requested task (NOT_FOUND)."""


class InvalidOffloadRequest(InvalidInput, ControllerError):
    """An offload request field out of bounds, e.g. a model name no model can have."""


class MalformedFrame(InvalidInput, ControllerError):
    """A frame tensor or image cannot be decoded, or is too large (INVALID_ARGUMENT)."""


class ServingFailure(ControllerError):
    """The cloud model failed to load or run (INTERNAL)."""
