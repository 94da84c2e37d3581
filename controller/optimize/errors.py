"""Errors of the model build pipeline, rooted in the controller's hierarchy."""

from controller.errors import ControllerError


class BuildError(ControllerError):
    """A model could not be built into variants."""


class NotAnOnnxModel(BuildError):
    """The source file is not a loadable ONNX model."""


class UnsupportedModel(BuildError):
    """The ONNX model is valid but not of a shape the pipeline handles (one image input...)."""


class DataMismatch(BuildError):
    """Validation or calibration data does not fit the model."""


class VariantUnavailable(BuildError):
    """A variant cannot be produced here (missing extra, unloadable ops); the build goes on."""
