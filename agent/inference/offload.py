"""The offload client: sends a hard frame to the controller's OffloadService over gRPC."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np

from agent.errors import AgentError
from edgefleet.v1 import inference_pb2, inference_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_DTYPES = {
    np.dtype(np.uint8): inference_pb2.TENSOR_DTYPE_UINT8,
    np.dtype(np.int8): inference_pb2.TENSOR_DTYPE_INT8,
    np.dtype(np.float16): inference_pb2.TENSOR_DTYPE_FLOAT16,
    np.dtype(np.float32): inference_pb2.TENSOR_DTYPE_FLOAT32,
}


class OffloadFailed(AgentError):
    """An offload did not produce a cloud answer; `kind` names why (for telemetry)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"offload failed ({kind}): {message}")
        self.kind = kind


@dataclass(frozen=True)
class OffloadFrame:
    model: str
    edge_variant_id: str
    frame_id: str
    frame: np.ndarray  # raw H x W [x C] frame; the cloud applies its own preprocessing
    edge_label: int
    edge_confidence: float
    audit: bool = False


@dataclass(frozen=True)
class CloudAnswer:
    label: int
    label_name: str
    confidence: float
    model_id: str
    queue_ms: float
    infer_ms: float
    round_trip_ms: float
    request_bytes: int


class OffloadClient(Protocol):
    def offload(self, request: OffloadFrame, timeout_s: float) -> CloudAnswer:
        """Return the cloud's answer or raise OffloadFailed; never block past timeout_s."""
        ...


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC channel options for the offload channel (secure or not)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def encode_frame(frame: np.ndarray) -> inference_pb2.Tensor:
    """uint8/int8 frames as they are; floats as float16 (half the bytes, ample for pixels)."""
    array = np.asarray(frame)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float16)
    dtype = _DTYPES.get(array.dtype)
    if dtype is None:
        raise OffloadFailed("invalid", f"cannot send a {array.dtype} frame")
    return inference_pb2.Tensor(
        dtype=dtype,
        shape=list(array.shape),
        data=np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes(),
    )


_FAILURE_KINDS = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "overloaded",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.NOT_FOUND: "unknown_model",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "unauthenticated",
}


class GrpcOffloadClient:
    """OffloadClient over a gRPC channel (the caller builds it, with mTLS in production)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._stub = inference_pb2_grpc.OffloadServiceStub(channel)

    @classmethod
    def insecure(
        cls, target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> GrpcOffloadClient:
        return cls(grpc.insecure_channel(target, options=channel_options(max_message_bytes)))

    def offload(self, request: OffloadFrame, timeout_s: float) -> CloudAnswer:
        message = inference_pb2.OffloadRequest(
            model=request.model,
            edge_variant_id=request.edge_variant_id,
            frame_id=request.frame_id,
            frame=encode_frame(request.frame),
            edge_label=request.edge_label,
            edge_confidence=request.edge_confidence,
            audit=request.audit,
        )
        size = message.ByteSize()
        start = time.perf_counter()
        try:
            reply = self._stub.Offload(message, timeout=max(timeout_s, 0.001))
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise OffloadFailed(_FAILURE_KINDS.get(code, "error"), f"{code}: {details}") from exc
        return CloudAnswer(
            label=reply.label,
            label_name=reply.label_name,
            confidence=reply.confidence,
            model_id=reply.model_id,
            queue_ms=reply.queue_ms,
            infer_ms=reply.infer_ms,
            round_trip_ms=(time.perf_counter() - start) * 1000.0,
            request_bytes=size,
        )

    def close(self) -> None:
        self._channel.close()
