"""Local runtime: variant loading, backends, preprocessing, frame sources, model swaps."""

from agent.runtime.backends import (
    PROVIDER_PREFERENCE,
    Backend,
    LiteRtBackend,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    choose_providers,
)
from agent.runtime.errors import BadFrame, FrameSourceError, RuntimeFailure
from agent.runtime.model import LoadedModel, ModelHolder, load_variant
from agent.runtime.preprocess import Preprocessor, dequantize, quantize
from agent.runtime.skipper import FrameSkipper
from agent.runtime.sources import ArraySource, ImageDirectorySource, VideoSource, open_source

__all__ = [
    "PROVIDER_PREFERENCE",
    "ArraySource",
    "Backend",
    "BadFrame",
    "FrameSkipper",
    "FrameSourceError",
    "ImageDirectorySource",
    "LiteRtBackend",
    "LoadedModel",
    "ModelHolder",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "Preprocessor",
    "RuntimeFailure",
    "VideoSource",
    "choose_providers",
    "dequantize",
    "load_variant",
    "open_source",
    "quantize",
]
