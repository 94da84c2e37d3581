"""Errors of the training stages, mapped to status codes through the shared hierarchy."""

from edgefleet.errors import DeadlineExceeded, FailedPrecondition, InvalidInput


class TrainingUnavailable(FailedPrecondition):
    """The controller lacks the ``train`` extra (torch, onnx2torch, torch-pruning)."""


class TrainingDataError(InvalidInput):
    """Training frames that are missing, too many, or of the wrong shape for the model."""


class UnknownArchitecture(InvalidInput):
    """A student architecture the catalogue does not have."""


class TrainingCancelled(FailedPrecondition):
    """The operator cancelled a training run; nothing it made was registered."""


class TrainingTimedOut(DeadlineExceeded):
    """A training run passed its wall-time bound; nothing it made was registered."""
