"""Cloud model serving: ONNX Runtime model, dynamic batching, and the thin OffloadService."""

from controller.serving.batcher import DynamicBatcher
from controller.serving.cloud_model import BatchedModel, CloudModel, Prediction, Predictor
from controller.serving.errors import MalformedFrame, Overloaded, ServingFailure, UnknownModel
from controller.serving.servicer import (
    DEFAULT_MAX_MESSAGE_BYTES,
    LabelledPair,
    OffloadServicer,
    add_to_server,
    decode_request,
    server_options,
    start_insecure_server,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "BatchedModel",
    "CloudModel",
    "DynamicBatcher",
    "LabelledPair",
    "MalformedFrame",
    "OffloadServicer",
    "Overloaded",
    "Prediction",
    "Predictor",
    "ServingFailure",
    "UnknownModel",
    "add_to_server",
    "decode_request",
    "server_options",
    "start_insecure_server",
]
