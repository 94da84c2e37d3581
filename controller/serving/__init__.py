"""Cloud model serving: ONNX Runtime model, direct calls and batching (formed in the handlers'
threads, or by a batcher thread), admission against each frame's deadline, image decoding
(the gRPC OffloadService is controller.grpc.offload_servicer)."""

from controller.serving.batcher import DynamicBatcher
from controller.serving.cloud_model import BatchedModel, CloudModel, Prediction, Predictor
from controller.serving.combining import CombinedModel, DirectModel
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
    "CombinedModel",
    "DirectModel",
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
