"""The offload client: sends a hard frame to the controller's OffloadService over gRPC.

Frames go over OffloadStream lanes (agent.inference.offload_stream) when the controller has
them, else over the unary Offload call: an UNIMPLEMENTED stream turns streams off for good, a
refused one (RESOURCE_EXHAUSTED: the controller's stream bound) for ``STREAM_RETRY_S``; a lane
that breaks for any other reason costs the frame nothing but a unary call in its remaining time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np

from agent.errors import AgentError
from agent.inference.offload_stream import LaneBroken, LanePool, LaneTimeout
from edgefleet.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STREAM_RETRY_S = 10.0  # after the controller refused a stream: unary calls meanwhile
# Open streams per client; the agent's further offloads in flight go unary. Each stream holds a
# server thread: measured (bench_offload, 32 devices at 2x overload), 6 lanes a device made
# the threaded server collapse (0 answers), 2 kept admitted p99 within the deadline.
MAX_LANES = 2
# A stream frame's deadline on the server is shorter than the caller's wait by a quarter (20 to
# 100 ms), so the server's DEADLINE_EXCEEDED answer arrives before the caller gives up on it.
STREAM_DEADLINE_MARGIN = (0.25, 0.02, 0.1)  # fraction, at least, at most (seconds)
_CODES = {code.value[0]: code for code in grpc.StatusCode}

_DTYPES = {
    np.dtype(np.uint8): inference_pb2.TENSOR_DTYPE_UINT8,
    np.dtype(np.int8): inference_pb2.TENSOR_DTYPE_INT8,
    np.dtype(np.float16): inference_pb2.TENSOR_DTYPE_FLOAT16,
    np.dtype(np.float32): inference_pb2.TENSOR_DTYPE_FLOAT32,
}


class OffloadFailed(AgentError):
    """An offload did not produce a cloud answer; `kind` names why (for telemetry).
    `answered` is False when no status came back from the controller in time (the client's
    own timer ran out), True when the controller answered with the status."""

    def __init__(self, kind: str, message: str, answered: bool = True) -> None:
        super().__init__(f"offload failed ({kind}): {message}")
        self.kind = kind
        self.answered = answered


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
    tensor = inference_pb2.Tensor()
    fill_tensor(tensor, frame)
    return tensor


def fill_tensor(tensor: inference_pb2.Tensor, frame: np.ndarray) -> None:
    """encode_frame into an existing message (one copy of the pixels, into the message)."""
    array = np.asarray(frame)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype("<f2")
    dtype = _DTYPES.get(array.dtype.newbyteorder("="))
    if dtype is None:
        raise OffloadFailed("invalid", f"cannot send a {array.dtype} frame")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    tensor.dtype = dtype
    tensor.shape[:] = array.shape
    tensor.data = array.tobytes()  # C order, whatever the array's layout


def offload_request(request: OffloadFrame) -> inference_pb2.OffloadRequest:
    message = inference_pb2.OffloadRequest(
        model=request.model,
        edge_variant_id=request.edge_variant_id,
        frame_id=request.frame_id,
        edge_label=request.edge_label,
        edge_confidence=request.edge_confidence,
        audit=request.audit,
    )
    fill_tensor(message.frame, request.frame)
    return message


_FAILURE_KINDS = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "overloaded",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.NOT_FOUND: "unknown_model",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "unauthenticated",
}


def _failure(code: grpc.StatusCode, details: str) -> OffloadFailed:
    return OffloadFailed(_FAILURE_KINDS.get(code, "error"), f"{code}: {details}")


class GrpcOffloadClient:
    """OffloadClient over a gRPC channel (the caller builds it, with mTLS in production):
    OffloadStream lanes when `use_streams` and the controller has them, else unary calls."""

    def __init__(
        self, channel: grpc.Channel, use_streams: bool = True, max_lanes: int = MAX_LANES
    ) -> None:
        self._channel = channel
        self._stub = inference_pb2_grpc.OffloadServiceStub(channel)
        self._lanes = LanePool(self._stub, max_lanes)
        self._streams = use_streams
        self._streams_after = 0.0  # monotonic time before which streams are not tried
        self._lock = threading.Lock()
        self.fallbacks = 0  # frames that went unary after a stream failed them

    @classmethod
    def insecure(
        cls,
        target: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        use_streams: bool = True,
    ) -> GrpcOffloadClient:
        channel = grpc.insecure_channel(target, options=channel_options(max_message_bytes))
        return cls(channel, use_streams)

    @property
    def streaming(self) -> bool:
        """Whether the next frame will be tried on a stream."""
        return self._streams and time.monotonic() >= self._streams_after

    def offload(self, request: OffloadFrame, timeout_s: float) -> CloudAnswer:
        message = offload_request(request)
        size = message.ByteSize()
        start = time.perf_counter()
        reply = self._on_stream(message, timeout_s) if self.streaming else None
        if reply is None:
            remaining = timeout_s - (time.perf_counter() - start)
            reply = self._unary(message, remaining)
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

    def _on_stream(
        self, message: inference_pb2.OffloadRequest, timeout_s: float
    ) -> inference_pb2.OffloadResponse | None:
        """The answer over a lane; None when the frame should go unary instead."""
        lane = self._lanes.take()
        if lane is None:  # every lane busy
            return None
        fraction, least, most = STREAM_DEADLINE_MARGIN
        margin = min(most, max(least, fraction * timeout_s))
        message.timeout_ms = max(1, round((timeout_s - margin) * 1000))
        try:
            reply = lane.exchange(message, timeout_s)
        except LaneTimeout as exc:
            # retired, not kept waiting for the late answer: a lane that is not ready would
            # send the next frames unary, the dearest call on an overloaded controller
            lane.cancel()
            self._lanes.give_back(lane)
            raise OffloadFailed("deadline", str(exc), answered=False) from None
        except LaneBroken as exc:
            self._lanes.give_back(lane)
            self._stream_failed(exc)
            message.ClearField("timeout_ms")
            message.ClearField("sequence")
            return None
        self._lanes.give_back(lane)
        if reply.status_code != 0:
            raise _failure(
                _CODES.get(reply.status_code, grpc.StatusCode.UNKNOWN), reply.status_message
            )
        return reply

    def _stream_failed(self, exc: LaneBroken) -> None:
        with self._lock:
            self.fallbacks += 1
            if exc.code is grpc.StatusCode.UNIMPLEMENTED:
                log.info("the controller has no OffloadStream: offloading with unary calls")
                self._streams = False
            elif exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.info(
                    "offload stream refused (%s): unary calls for %.0fs",
                    exc.details,
                    STREAM_RETRY_S,
                )
                self._streams_after = time.monotonic() + STREAM_RETRY_S
            else:
                log.debug("offload stream ended (%s): this frame goes unary", exc)

    def _unary(
        self, message: inference_pb2.OffloadRequest, timeout_s: float
    ) -> inference_pb2.OffloadResponse:
        try:
            reply: inference_pb2.OffloadResponse = self._stub.Offload(
                message, timeout=max(timeout_s, 0.001)
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            failure = _failure(code, details)
            # a unary DEADLINE_EXCEEDED may be the channel's own timer: not counted as answered
            failure.answered = code is not grpc.StatusCode.DEADLINE_EXCEEDED
            raise failure from exc
        return reply

    def close(self) -> None:
        self._lanes.close()
        self._channel.close()
