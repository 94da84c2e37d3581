"""OffloadService (devices, mutual TLS) — thin: decode the frame, ask the cloud model, encode
the answer. Domain errors reach the caller through the shared status table (the auth
interceptor on the controller's server, ErrorStatusInterceptor on a plain test server)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent import futures

import grpc
import numpy as np

from controller.grpc.error_status import ErrorStatusInterceptor
from controller.services.offload import LabelledPair
from controller.serving.cloud_model import Prediction, Predictor
from controller.serving.errors import MalformedFrame, UnknownModel
from controller.serving.images import FrameLimits, decode_image
from edgefleet.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_DTYPES: dict[int, np.dtype] = {
    inference_pb2.TENSOR_DTYPE_UINT8: np.dtype(np.uint8),
    inference_pb2.TENSOR_DTYPE_INT8: np.dtype(np.int8),
    inference_pb2.TENSOR_DTYPE_FLOAT16: np.dtype("<f2"),
    inference_pb2.TENSOR_DTYPE_FLOAT32: np.dtype("<f4"),
}


def decode_tensor(tensor: inference_pb2.Tensor, limits: FrameLimits) -> np.ndarray:
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise MalformedFrame(f"unsupported tensor dtype {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) not in (2, 3):
        raise MalformedFrame(f"frame shape must be H x W [x C]: {shape}")
    limits.check(shape[0], shape[1])
    if len(shape) == 3 and shape[2] not in (1, 3, 4):
        raise MalformedFrame(f"frame must have 1, 3 or 4 channels, got {shape[2]}")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise MalformedFrame(f"{len(tensor.data)} data bytes for shape {shape}, want {expected}")
    frame = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    if dtype.kind == "f" and not np.all(np.isfinite(frame)):
        raise MalformedFrame("frame holds NaN or infinite values")
    return frame


def decode_request(request: inference_pb2.OffloadRequest, limits: FrameLimits) -> np.ndarray:
    kind = request.WhichOneof("payload")
    if kind == "frame":
        return decode_tensor(request.frame, limits)
    if kind == "image":
        return decode_image(request.image.data, request.image.format, limits)
    raise MalformedFrame("request carries neither a frame nor an image")


def encode_prediction(p: Prediction, with_probabilities: bool) -> inference_pb2.OffloadResponse:
    return inference_pb2.OffloadResponse(
        label=p.label,
        label_name=p.label_name,
        confidence=p.confidence,
        probabilities=p.probabilities if with_probabilities else (),
        model_id=p.model_id,
        queue_ms=p.queue_ms,
        infer_ms=p.infer_ms,
    )


def labelled_pair(
    device_id: str, request: inference_pb2.OffloadRequest, p: Prediction
) -> LabelledPair:
    return LabelledPair(
        device_id=device_id,
        model=request.model,
        edge_variant_id=request.edge_variant_id,
        frame_id=request.frame_id,
        edge_label=request.edge_label,
        edge_confidence=request.edge_confidence,
        cloud_label=p.label,
        cloud_confidence=p.confidence,
        cloud_model_id=p.model_id,
        audit=request.audit,
    )


class OffloadServicer(inference_pb2_grpc.OffloadServiceServicer):
    """`models` maps an edge task name to its cloud predictor (CloudModel or BatchedModel);
    `identify` returns the caller's device id (from the mTLS certificate); `on_pair` receives
    each labelled pair (it must be quick; its failures are logged, never the caller's)."""

    def __init__(
        self,
        models: Mapping[str, Predictor],
        identify: Callable[[grpc.ServicerContext], str],
        on_pair: Callable[[LabelledPair], None] | None = None,
        with_probabilities: bool = False,
    ) -> None:
        self.models = models
        self.identify = identify
        self.on_pair = on_pair
        self.with_probabilities = with_probabilities

    def Offload(
        self, request: inference_pb2.OffloadRequest, context: grpc.ServicerContext
    ) -> inference_pb2.OffloadResponse:
        device_id = self.identify(context)
        model = self.models.get(request.model)
        if model is None:
            raise UnknownModel(f"no cloud model serves {request.model!r}")
        frame = decode_request(request, FrameLimits.for_input(model.input_size))
        prediction = model.predict(frame, timeout_s=context.time_remaining())
        if self.on_pair is not None:
            try:
                self.on_pair(labelled_pair(device_id, request, prediction))
            except Exception:  # a listener's bug is not the device's error
                log.exception("on_pair listener failed for device=%s", device_id)
        return encode_prediction(prediction, self.with_probabilities)


def server_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def add_to_server(servicer: OffloadServicer, server: grpc.Server) -> None:
    inference_pb2_grpc.add_OffloadServiceServicer_to_server(servicer, server)


def start_insecure_server(
    servicer: OffloadServicer,
    address: str = "127.0.0.1:0",
    max_workers: int = 32,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[grpc.Server, int]:
    """A plain-text server for tests and benchmarks (the controller serves it with mTLS)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="offload-rpc"),
        interceptors=[ErrorStatusInterceptor()],
        options=server_options(max_message_bytes),
    )
    add_to_server(servicer, server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port
