"""OffloadService (devices, mutual TLS) — thin: decode the frame, ask the cloud model, encode
the answer. Domain errors reach the caller through the shared status table (the auth
interceptor on the controller's server, ErrorStatusInterceptor on a plain test server).

OffloadStream is the same exchange on a long-lived stream, one frame at a time: each frame has
its own deadline (``timeout_ms``, at most ``MAX_FRAME_TIMEOUT_S``) and each answer its own
status from the same table, so a refused (RESOURCE_EXHAUSTED), late (DEADLINE_EXCEEDED) or
malformed (INVALID_ARGUMENT) frame does not end the stream. A stream holds a server worker
thread while it is open, so streams are bounded per device and in all (``StreamLimits``),
and one left idle (or open too long) is cancelled; a refused stream ends RESOURCE_EXHAUSTED
and the device offloads with unary calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures

import grpc
import numpy as np

from controller.grpc.error_status import ErrorStatusInterceptor
from controller.grpc.stream_guard import StreamLimits, StreamSlots
from controller.services.offload import LabelledPair
from controller.serving.cloud_model import Prediction, Predictor
from controller.serving.errors import InvalidOffloadRequest, MalformedFrame, UnknownModel
from controller.serving.images import FrameLimits, decode_image
from edgefleet.errors import EdgeFleetError, ResourceExhausted
from edgefleet.status import status_for
from edgefleet.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_FRAME_TIMEOUT_S = 60.0
# Longest text fields an offload request may carry: a model name (the catalogue's are at most
# 64 characters, its cloud_for column 128), a variant id and a frame id. Checked before any
# lookup, so a device cannot make the controller look up, remember or echo megabytes of name.
MAX_MODEL_NAME = 128
MAX_ID_CHARS = 256
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


def check_request_fields(request: inference_pb2.OffloadRequest) -> None:
    """InvalidOffloadRequest when a text field is longer than any real one can be."""
    for name, value, limit in (
        ("model", request.model, MAX_MODEL_NAME),
        ("edge_variant_id", request.edge_variant_id, MAX_ID_CHARS),
        ("frame_id", request.frame_id, MAX_ID_CHARS),
    ):
        if len(value) > limit:
            raise InvalidOffloadRequest(f"{name} longer than {limit} characters ({len(value)})")


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


def offload_stream_limits(workers: int) -> StreamLimits:
    """Offload streams may hold half of `workers` server threads, 8 per device (the agent's
    offloads in flight); a stream with no frame for 60 s, or open for 15 minutes, is cancelled
    (the device opens a new one)."""
    total = max(1, workers // 2)
    return StreamLimits(per_device=min(8, total), total=total, idle_s=60.0, max_s=900.0)


def frame_timeout(
    request: inference_pb2.OffloadRequest, stream_remaining: float | None, reply_lag_s: float = 0.0
) -> float:
    """A stream frame's deadline in seconds: its own, never past the stream's, less the time
    the server's answers have been taking to leave (so that they arrive in time)."""
    if request.timeout_ms <= 0:
        raise MalformedFrame("a stream frame needs timeout_ms > 0")
    timeout = min(request.timeout_ms / 1000.0, MAX_FRAME_TIMEOUT_S)
    if stream_remaining is not None:
        timeout = min(timeout, stream_remaining)
    return timeout - min(reply_lag_s, timeout / 4)


def unary_timeout(remaining: float | None) -> float | None:
    """A unary call's deadline on the server: the caller's, less a margin (a quarter, 20 to
    100 ms) so that the server's own DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED arrives before
    the caller's timer runs out (else the caller sees a bare timeout, not the reason)."""
    if remaining is None:
        return None
    return remaining - min(0.1, max(0.02, 0.25 * remaining))


class ReplyLag:
    """How long the server's stream answers take to leave once ready (the gRPC write and the
    wait for a thread under load), from recent answers: ``seconds`` is their mean + 3 standard
    deviations (exponentially weighted). It overstates the way out a little (the handler's own
    wake-up after the write counts) and leaves out the way in (not timed here); doubled, it
    made admission refuse frames answered well in time (bench_offload at load 20: 407 refused
    in a closed loop whose answered p99 was 138 of 250 ms)."""

    WEIGHT = 0.05

    def __init__(self) -> None:
        self.mean_s = 0.0
        self.var_s2 = 0.0

    def record(self, seconds: float) -> None:
        delta = seconds - self.mean_s
        self.mean_s += self.WEIGHT * delta
        self.var_s2 = (1 - self.WEIGHT) * (self.var_s2 + self.WEIGHT * delta * delta)

    @property
    def seconds(self) -> float:
        return self.mean_s + 3.0 * self.var_s2**0.5


class OffloadServicer(inference_pb2_grpc.OffloadServiceServicer):
    """`models` maps an edge task name to its cloud predictor (CloudModel or BatchedModel);
    `identify` returns the caller's device id (from the mTLS certificate); `on_pair` receives
    each labelled pair (it must be quick; its failures are logged, never the caller's);
    `stream_limits` bounds the open OffloadStream calls (see offload_stream_limits);
    `on_frame` receives each labelled pair with its decoded frame (the hard-example store's
    listener: quick, failures logged)."""

    def __init__(
        self,
        models: Mapping[str, Predictor],
        identify: Callable[[grpc.ServicerContext], str],
        on_pair: Callable[[LabelledPair], None] | None = None,
        with_probabilities: bool = False,
        stream_limits: StreamLimits | None = None,
        on_frame: Callable[[LabelledPair, np.ndarray], None] | None = None,
    ) -> None:
        self.models = models
        self.on_frame = on_frame
        self.identify = identify
        self.on_pair = on_pair
        self.with_probabilities = with_probabilities
        self.streams = StreamSlots(stream_limits or offload_stream_limits(32))
        self.reply_lag = ReplyLag()  # shortens each stream frame's deadline on the server

    def Offload(
        self, request: inference_pb2.OffloadRequest, context: grpc.ServicerContext
    ) -> inference_pb2.OffloadResponse:
        device_id = self.identify(context)
        return self._answer(device_id, request, unary_timeout(context.time_remaining()))

    def OffloadStream(
        self, requests: Iterator[inference_pb2.OffloadRequest], context: grpc.ServicerContext
    ) -> Iterator[inference_pb2.OffloadResponse]:
        device_id = self.identify(context)
        try:
            stream = self.streams.open(device_id, context)
        except ResourceExhausted as exc:
            raise ResourceExhausted(
                f"too many offload streams ({self.streams.limits.per_device} per device, "
                f"{self.streams.limits.total} in all): offload with unary calls",
                retry_after_s=exc.retry_after_s,
            ) from None
        try:
            while True:
                self.streams.sending(stream)  # waiting for the device: idle time counts
                try:
                    request = next(requests, None)
                except grpc.RpcError:  # cancelled (by the device or the idle watchdog)
                    return
                self.streams.sent(stream)
                if request is None:
                    return
                reply = self._answer_on_stream(device_id, request, context)
                self.streams.sending(stream)
                ready = time.monotonic()
                yield reply  # resumed once gRPC has written it
                self.reply_lag.record(time.monotonic() - ready)
                self.streams.sent(stream)
        finally:
            self.streams.close(stream)

    def _answer_on_stream(
        self,
        device_id: str,
        request: inference_pb2.OffloadRequest,
        context: grpc.ServicerContext,
    ) -> inference_pb2.OffloadResponse:
        try:
            timeout = frame_timeout(request, context.time_remaining(), self.reply_lag.seconds)
            reply = self._answer(device_id, request, timeout)
        except EdgeFleetError as exc:
            code = status_for(exc)
            log.log(
                logging.ERROR if code is grpc.StatusCode.INTERNAL else logging.DEBUG,
                "OffloadStream frame of device=%s -> %s: %s", device_id, code.name, exc,
            )  # fmt: skip
            return inference_pb2.OffloadResponse(
                sequence=request.sequence, status_code=code.value[0], status_message=str(exc)
            )
        reply.sequence = request.sequence
        return reply

    def _answer(
        self, device_id: str, request: inference_pb2.OffloadRequest, timeout_s: float | None
    ) -> inference_pb2.OffloadResponse:
        check_request_fields(request)
        model = self.models.get(request.model)
        if model is None:
            raise UnknownModel(f"no cloud model serves {request.model!r}")
        frame = decode_request(request, FrameLimits.for_input(model.input_size))
        prediction = model.predict(frame, timeout_s=timeout_s)
        if self.on_pair is not None or self.on_frame is not None:
            pair = labelled_pair(device_id, request, prediction)
            _tell(self.on_pair, device_id, pair)
            _tell(self.on_frame, device_id, pair, frame)
        return encode_prediction(prediction, self.with_probabilities)


def _tell(listener: Callable[..., None] | None, device_id: str, *args: object) -> None:
    if listener is None:
        return
    try:
        listener(*args)
    except Exception:  # a listener's bug is not the device's error
        log.exception("offload listener failed for device=%s", device_id)


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
