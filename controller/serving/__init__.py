"""Cloud model serving: ONNX Runtime model, dynamic batching, image decoding (the gRPC
OffloadService is controller.grpc.offload_servicer)."""

from controller.serving.batcher import DynamicBatcher
from controller.serving.cloud_model import BatchedModel, CloudModel, Prediction, Predictor
from controller.serving.errors import (
    AnswerTimeout,
    MalformedFrame,
    Overloaded,
    ServingFailure,
    UnknownModel,
)
from controller.serving.images import FrameLimits, decode_image

__all__ = [
    "AnswerTimeout",
    "BatchedModel",
    "CloudModel",
    "DynamicBatcher",
    "FrameLimits",
    "MalformedFrame",
    "Overloaded",
    "Prediction",
    "Predictor",
    "ServingFailure",
    "UnknownModel",
    "decode_image",
]
