"""OffloadStream over a real gRPC server on loopback: per-frame deadline, status and overload
answers on a stream that stays open, the bound on streams and on frames in flight, hostile
streams, and the client's fallback to unary calls. The servicer + batcher + cloud model are
the controller's; the mutual-TLS tests run a real controller and an enrolled device."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from agent.inference import GrpcOffloadClient, OffloadFailed, OffloadFrame
from agent.inference.offload import encode_frame
from controller.grpc.error_status import ErrorStatusInterceptor
from controller.grpc.offload_servicer import OffloadServicer, start_insecure_server
from controller.grpc.stream_guard import StreamLimits
from controller.serving import BatchedModel, CloudModel, DynamicBatcher, Prediction
from controller.serving.combining import CombinedModel, DirectModel
from edgefleet.v1 import inference_pb2, inference_pb2_grpc
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller
from tests.unit.test_runtime_models import (
    PREPROCESSING,
    constant_weights,
    frames,
    linear_classifier,
)

CLOUD_LABEL = 7
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
OK, DEADLINE = grpc.StatusCode.OK.value[0], grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


@pytest.fixture(scope="module")
def cloud_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linear_classifier(
        tmp_path_factory.mktemp("cloud") / "cloud.onnx", *constant_weights(CLOUD_LABEL)
    )


@pytest.fixture(scope="module")
def cloud_model(cloud_path: Path) -> CloudModel:
    return CloudModel(cloud_path, PREPROCESSING, model_id="tiny-cloud:1", threads=1)


class Stream:
    """One raw OffloadStream call: `send` a request, `receive` the next answer."""

    def __init__(self, stub: inference_pb2_grpc.OffloadServiceStub) -> None:
        self._out: queue.Queue[inference_pb2.OffloadRequest | None] = queue.Queue()
        self.responses = stub.OffloadStream(self._requests())

    def _requests(self) -> Iterator[inference_pb2.OffloadRequest]:
        while (item := self._out.get()) is not None:
            yield item

    def send(self, request: inference_pb2.OffloadRequest) -> None:
        self._out.put(request)

    def receive(self) -> inference_pb2.OffloadResponse:
        return next(self.responses)

    def ask(self, request: inference_pb2.OffloadRequest) -> inference_pb2.OffloadResponse:
        self.send(request)
        return self.receive()

    def close(self) -> None:
        self._out.put(None)


def frame_request(
    seq: int, timeout_ms: int = 5000, model: str = "tiny"
) -> inference_pb2.OffloadRequest:
    return inference_pb2.OffloadRequest(
        model=model, frame_id=f"f{seq}", frame=encode_frame(frames(1)[0]), sequence=seq,
        timeout_ms=timeout_ms,
    )  # fmt: skip


def client_frame() -> OffloadFrame:
    return OffloadFrame("tiny", "tiny:1", "x", frames(1)[0], 3, 0.5)


class Concurrency:
    """A predictor wrapper that records how many predict calls ran at once."""

    def __init__(self, inner: BatchedModel) -> None:
        self.inner, self.model_id = inner, inner.model_id
        self.now = self.peak = self.calls = 0
        self._lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inner.input_size

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(0.005)
            return self.inner.predict(frame, timeout_s)
        finally:
            with self._lock:
                self.now -= 1


class CountingServicer(OffloadServicer):
    """Counts the unary Offload calls."""

    unary_calls = 0

    def Offload(self, request, context):  # type: ignore[no-untyped-def]
        self.unary_calls += 1
        return super().Offload(request, context)


def serve(models: dict[str, object], limits: StreamLimits | None = None, max_bytes: int = 1 << 20):
    servicer = CountingServicer(models, identify=lambda _c: "device-1", stream_limits=limits)  # type: ignore[arg-type]
    server, port = start_insecure_server(servicer, max_workers=16, max_message_bytes=max_bytes)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return servicer, server, channel, inference_pb2_grpc.OffloadServiceStub(channel)


def first_batch_slow(cloud_model: CloudModel) -> BatchedModel:
    """A batched model whose first batch takes a second."""
    slow_calls = [1]

    def first_slow(tensors: Sequence[np.ndarray]) -> list[Prediction]:
        if slow_calls:
            slow_calls.pop()
            time.sleep(1.0)
        return cloud_model.run_batch(tensors)

    return BatchedModel(cloud_model, DynamicBatcher(first_slow, max_batch_size=4))


def test_late_frame_gets_deadline_exceeded_and_the_stream_goes_on(cloud_model: CloudModel) -> None:
    model = first_batch_slow(cloud_model)
    _, server, channel, stub = serve({"tiny": model})
    stream = Stream(stub)
    try:
        started = time.perf_counter()
        late = stream.ask(frame_request(1, timeout_ms=200))
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # the worker finishes the slow batch
        answered = stream.ask(frame_request(2))
        no_deadline = stream.ask(frame_request(3, timeout_ms=0))
        stream.close()
    finally:
        channel.close()
        server.stop(None)
        model.close()
    assert (late.sequence, late.status_code) == (1, DEADLINE)
    assert 0.19 < elapsed < 0.5
    assert (answered.sequence, answered.status_code, answered.label) == (2, OK, CLOUD_LABEL)
    assert (no_deadline.sequence, no_deadline.status_code) == (3, INVALID)


def test_client_keeps_its_deadline_on_the_stream(cloud_model: CloudModel) -> None:
    model = first_batch_slow(cloud_model)
    _, server, channel, _ = serve({"tiny": model})
    client = GrpcOffloadClient(channel)
    try:
        started = time.perf_counter()
        with pytest.raises(OffloadFailed) as info:
            client.offload(client_frame(), timeout_s=0.2)
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # the worker finishes the slow batch
        # the timed-out lane is retired: the second frame goes on a fresh stream
        answer = client.offload(client_frame(), timeout_s=5.0)
    finally:
        client.close()
        server.stop(None)
        model.close()
    assert info.value.kind == "deadline"
    assert elapsed < 0.2 + 0.1
    assert answer.label == CLOUD_LABEL
    assert client.fallbacks == 0  # both frames went over the stream, none unary


def test_full_queue_answers_resource_exhausted_per_frame(cloud_model: CloudModel) -> None:
    started, release = threading.Event(), threading.Event()

    def blocked(tensors: Sequence[np.ndarray]) -> list[Prediction]:
        started.set()
        release.wait(10)
        return cloud_model.run_batch(tensors)

    batcher: DynamicBatcher[np.ndarray, Prediction] = DynamicBatcher(
        blocked, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=1
    )
    model = BatchedModel(cloud_model, batcher)
    _, server, channel, stub = serve({"tiny": model})
    holding, queued, refused = Stream(stub), Stream(stub), Stream(stub)
    try:
        holding.send(frame_request(1))
        assert started.wait(5)  # the worker holds the first frame
        queued.send(frame_request(1))
        assert wait_until(lambda: batcher.queue_depth() == 1, 5, 0.01)  # the queue is full
        answer = refused.ask(frame_request(7))
        assert (answer.sequence, answer.status_code) == (7, EXHAUSTED)
        release.set()
        assert holding.receive().status_code == OK
        assert queued.receive().status_code == OK
        again = refused.ask(frame_request(8))  # the refused stream is still open
        for stream in (holding, queued, refused):
            stream.close()
    finally:
        release.set()
        channel.close()
        server.stop(None)
        batcher.close()
    assert (again.sequence, again.status_code, again.label) == (8, OK, CLOUD_LABEL)


def test_hostile_frames_are_refused_one_by_one(cloud_model: CloudModel) -> None:
    model = BatchedModel(cloud_model, max_batch_size=4, max_queue_delay_ms=1.0)
    _, server, channel, stub = serve({"tiny": model}, max_bytes=1 << 20)
    short = inference_pb2.Tensor(dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[8, 8], data=b"x")
    huge = inference_pb2.Tensor(
        dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[100_000, 100_000], data=b""
    )
    junk = inference_pb2.EncodedImage(format="png", data=b"not a png")
    cases = [
        (inference_pb2.OffloadRequest(model="tiny", frame=short, timeout_ms=1000), INVALID),
        (inference_pb2.OffloadRequest(model="tiny", frame=huge, timeout_ms=1000), INVALID),
        (inference_pb2.OffloadRequest(model="tiny", image=junk, timeout_ms=1000), INVALID),
        (inference_pb2.OffloadRequest(model="tiny", timeout_ms=1000), INVALID),
        (frame_request(0, model="other"), NOT_FOUND),
    ]
    stream = Stream(stub)
    try:
        codes = []
        for seq, (request, _) in enumerate(cases, start=100):
            request.sequence = seq
            reply = stream.ask(request)
            codes.append((reply.sequence, reply.status_code))
        good = stream.ask(frame_request(1))
        # a message over the server's size bound ends the stream, RESOURCE_EXHAUSTED
        oversize = inference_pb2.OffloadRequest(
            model="tiny", image=inference_pb2.EncodedImage(format="png", data=b"\0" * (2 << 20))
        )
        stream.send(oversize)
        with pytest.raises(grpc.RpcError) as info:
            stream.receive()
    finally:
        channel.close()
        server.stop(None)
        model.close()
    assert codes == [(100 + i, code) for i, (_, code) in enumerate(cases)]
    assert (good.status_code, good.label) == (OK, CLOUD_LABEL)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_flood_on_one_stream_is_served_one_frame_at_a_time(cloud_model: CloudModel) -> None:
    model = Concurrency(BatchedModel(cloud_model, max_batch_size=8, max_queue_delay_ms=1.0))
    _, server, channel, stub = serve({"tiny": model})
    stream = Stream(stub)
    try:
        for seq in range(1, 201):  # written without reading a single answer
            stream.send(frame_request(seq))
        answers = [stream.receive() for _ in range(200)]
        stream.close()
    finally:
        channel.close()
        server.stop(None)
        model.inner.close()
    assert [(a.sequence, a.status_code) for a in answers] == [(s, OK) for s in range(1, 201)]
    assert (model.calls, model.peak) == (200, 1)


def test_streams_are_bounded_and_idle_ones_cancelled(cloud_model: CloudModel) -> None:
    model = BatchedModel(cloud_model, max_batch_size=4, max_queue_delay_ms=1.0)
    limits = StreamLimits(per_device=2, total=2, idle_s=0.6, max_s=60.0)
    servicer, server, channel, stub = serve({"tiny": model}, limits)
    # A call takes its slot when it reaches the server: open each only once the one before
    # holds its slot, or which two get in is a race.
    first = Stream(stub)
    try:
        assert first.ask(frame_request(1)).status_code == OK
        second = Stream(stub)
        assert second.ask(frame_request(1)).status_code == OK
        third = Stream(stub)
        third.send(frame_request(1))
        with pytest.raises(grpc.RpcError) as refused:
            third.receive()
        # both open streams now stay idle: the watchdog cancels them and frees their slots
        assert wait_until(lambda: servicer.streams.open_count() == 0, 5, 0.05)
        with pytest.raises(grpc.RpcError) as cancelled:
            first.receive()
        fresh = Stream(stub)
        assert fresh.ask(frame_request(2)).status_code == OK
        fresh.close()
    finally:
        channel.close()
        server.stop(None)
        model.close()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "offload streams" in (refused.value.details() or "")
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    assert servicer.streams.refused == 1


def test_client_falls_back_to_unary_on_a_server_without_streams(cloud_model: CloudModel) -> None:
    model = BatchedModel(cloud_model, max_batch_size=4, max_queue_delay_ms=1.0)
    servicer = OffloadServicer({"tiny": model}, identify=lambda _c: "device-1")
    unary_only = grpc.method_handlers_generic_handler(
        "edgefleet.v1.OffloadService",
        {
            "Offload": grpc.unary_unary_rpc_method_handler(
                servicer.Offload,
                request_deserializer=inference_pb2.OffloadRequest.FromString,
                response_serializer=inference_pb2.OffloadResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorStatusInterceptor()]
    )
    server.add_generic_rpc_handlers((unary_only,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = GrpcOffloadClient.insecure(f"127.0.0.1:{port}")
    try:
        first = client.offload(client_frame(), timeout_s=5)
        after_first = (client.streaming, client.fallbacks)
        second = client.offload(client_frame(), timeout_s=5)
    finally:
        client.close()
        server.stop(None)
        model.close()
    assert (first.label, second.label) == (CLOUD_LABEL, CLOUD_LABEL)
    assert after_first == (False, 1)
    assert client.fallbacks == 1  # the second frame went unary at once


class HeldModel(CloudModel):
    """The tiny cloud model, its calls (the first ``holds`` of them, None: all) held until
    `release` is set, then ``delay_s`` each."""

    def __init__(self, path: Path, delay_s: float = 0.0, holds: int | None = None) -> None:
        super().__init__(path, PREPROCESSING, model_id="held-cloud:1", threads=1)
        self.delay_s, self.holds = delay_s, holds
        self.started, self.release = threading.Event(), threading.Event()

    def run_batch(self, tensors: Sequence[np.ndarray]) -> list[Prediction]:
        self.started.set()
        if self.holds is None or self.holds > 0:
            if self.holds is not None:
                self.holds -= 1
            self.release.wait(10)
        time.sleep(self.delay_s)
        return super().run_batch(tensors)


def timed_ask(stream: Stream, request: inference_pb2.OffloadRequest) -> tuple[int, float]:
    started = time.perf_counter()
    reply = stream.ask(request)
    assert reply.sequence == request.sequence
    return reply.status_code, time.perf_counter() - started


def test_direct_path_refuses_at_admission_what_cannot_finish_in_time(cloud_path: Path) -> None:
    """One call at a time, measured 0.1 s a call: behind a running frame, a frame with 150 ms
    left is refused at once; one with a second left waits its turn and is answered."""
    held = HeldModel(cloud_path, delay_s=0.1)
    model = DirectModel(held, parallel=1, service_s=0.1)
    _, server, channel, stub = serve({"tiny": model})
    holding, hurried, patient = Stream(stub), Stream(stub), Stream(stub)
    try:
        holding.send(frame_request(1))
        assert held.started.wait(5)
        refused = timed_ask(hurried, frame_request(2, timeout_ms=150))
        patient.send(frame_request(3, timeout_ms=1000))
        assert wait_until(lambda: model.combiner.in_flight() == (1, 1), 5, 0.005)
        held.release.set()
        answered = (holding.receive().status_code, patient.receive().status_code)
        again = hurried.ask(frame_request(4, timeout_ms=1000))  # the refused stream goes on
        for stream in (holding, hurried, patient):
            stream.close()
    finally:
        held.release.set()
        channel.close()
        server.stop(None)
    assert refused[0] == EXHAUSTED and refused[1] < 0.08  # answered at the door
    assert answered == (OK, OK)
    assert (again.status_code, again.label) == (OK, CLOUD_LABEL)
    assert model.combiner.refused == 1 and model.combiner.expired == 0


def test_direct_path_answers_a_waiting_frame_deadline_exceeded_at_its_deadline(
    cloud_path: Path,
) -> None:
    """Admitted (the measured 10 ms a call fits its 300 ms), but the call ahead of it hangs:
    the frame is answered DEADLINE_EXCEEDED within its deadline, never left to time out."""
    held = HeldModel(cloud_path)
    model = DirectModel(held, parallel=1, service_s=0.01)
    _, server, channel, stub = serve({"tiny": model})
    holding, waiting = Stream(stub), Stream(stub)
    try:
        holding.send(frame_request(1))
        assert held.started.wait(5)
        expired = timed_ask(waiting, frame_request(2, timeout_ms=300))
        held.release.set()
        first = holding.receive().status_code
        after = waiting.ask(frame_request(3, timeout_ms=1000)).status_code
        for stream in (holding, waiting):
            stream.close()
    finally:
        held.release.set()
        channel.close()
        server.stop(None)
    assert expired[0] == DEADLINE and 0.25 < expired[1] < 0.4
    assert (first, after) == (OK, OK)
    assert model.combiner.expired == 1 and model.combiner.in_flight() == (0, 0)


def test_a_timed_out_lane_is_retired_and_the_next_frame_goes_on_a_fresh_stream(
    cloud_path: Path,
) -> None:
    """One lane: its frame times out on a held call; the next frame does not wait for the
    late answer, nor go unary (the dearest call on a loaded controller): a new stream."""
    held = HeldModel(cloud_path, holds=1)
    model = DirectModel(held, parallel=2, service_s=0.001)
    servicer, server, channel, _ = serve({"tiny": model})
    client = GrpcOffloadClient(channel, max_lanes=1)
    try:
        with pytest.raises(OffloadFailed) as late:
            client.offload(client_frame(), timeout_s=0.2)
        answer = client.offload(client_frame(), timeout_s=5.0)  # the first call still held
        unary = servicer.unary_calls
    finally:
        held.release.set()
        client.close()
        channel.close()
        server.stop(None)
    assert late.value.kind == "deadline"
    assert answer.label == CLOUD_LABEL
    assert (unary, client.fallbacks) == (0, 0)


def test_batches_form_in_the_handlers_only_from_frames_that_wait(cloud_path: Path) -> None:
    """A lone frame is a call of its own; while one call is held, the frames that arrive wait
    and then go as one batch of at most max_batch_size, in the waiting handlers' threads."""
    held = HeldModel(cloud_path, holds=0)
    model = CombinedModel(held, max_batch_size=4, parallel=1, call_s=0.001)
    _, server, channel, stub = serve({"tiny": model})
    streams = [Stream(stub) for _ in range(6)]
    try:
        alone = streams[0].ask(frame_request(1))
        after_alone = (model.combiner.batches, model.combiner.items)
        held.holds = 1
        held.started.clear()
        streams[0].send(frame_request(2))  # held
        assert held.started.wait(5)
        for i, stream in enumerate(streams[1:], start=3):
            stream.send(frame_request(i))
        assert wait_until(lambda: model.combiner.in_flight() == (1, 5), 5, 0.005)
        held.release.set()
        codes = [s.receive().status_code for s in streams]
        for stream in streams:
            stream.close()
    finally:
        held.release.set()
        channel.close()
        server.stop(None)
    assert (alone.status_code, alone.label, after_alone) == (OK, CLOUD_LABEL, (1, 1))
    assert codes == [OK] * 6
    # the held call, then the 5 that waited: a batch of 4 and the one left over
    assert (model.combiner.batches, model.combiner.items) == (4, 7)


def test_a_unary_call_gets_the_servers_own_deadline_answer_before_its_timer_runs_out(
    cloud_path: Path,
) -> None:
    held = HeldModel(cloud_path)
    model = DirectModel(held, parallel=1, service_s=0.001)
    _, server, channel, stub = serve({"tiny": model})
    holding = Stream(stub)
    request = inference_pb2.OffloadRequest(model="tiny", frame=encode_frame(frames(1)[0]))
    try:
        holding.send(frame_request(1))
        assert held.started.wait(5)
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            stub.Offload(request, timeout=0.4)
        elapsed = time.perf_counter() - started
        held.release.set()
        assert holding.receive().status_code == OK
        holding.close()
    finally:
        held.release.set()
        channel.close()
        server.stop(None)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "in time for the frame's deadline" in (info.value.details() or "")  # the server's
    assert elapsed < 0.38


def test_batched_path_refuses_a_frame_its_measured_batch_time_cannot_answer_in_time(
    cloud_model: CloudModel,
) -> None:
    model = BatchedModel(cloud_model, max_batch_size=4, max_queue_delay_ms=0.0)
    model.batcher.batch_time.seconds = 0.2  # as measured on a slow model: 0.4 s at worst
    _, server, channel, stub = serve({"tiny": model})
    stream = Stream(stub)
    try:
        refused = stream.ask(frame_request(1, timeout_ms=300)).status_code
        answered = stream.ask(frame_request(2, timeout_ms=2000))
        stream.close()
    finally:
        channel.close()
        server.stop(None)
        model.close()
    assert refused == EXHAUSTED
    assert (answered.status_code, answered.label) == (OK, CLOUD_LABEL)
    assert model.batcher.batch_time.seconds < 0.2  # the real call's time came in


@pytest.mark.timeout(90)
def test_stream_over_mutual_tls_with_an_enrolled_device(tmp_path: Path) -> None:
    """The controller's own server: the device's stream is answered, a stream past the
    controller's bound is refused RESOURCE_EXHAUSTED and the client offloads unary meanwhile."""
    ctl = start_controller(
        tmp_path / "controller", cloud_models=(f"digits={DIGITS / 'cloud.onnx'}",), grpc_workers=4
    )  # 4 workers: 2 offload streams in all
    admin = Admin(ctl)
    channels: list[grpc.Channel] = []
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)

        def channel() -> grpc.Channel:
            creds = Credentials.load(tmp_path / "cam")
            channels.append(device_channel(f"127.0.0.1:{ctl.device_port}", creds, 4 << 20))
            return channels[-1]

        stub = inference_pb2_grpc.OffloadServiceStub(channel())
        digit = np.zeros((8, 8), np.uint8)
        request = inference_pb2.OffloadRequest(
            model="digits", frame_id="d", frame=encode_frame(digit), sequence=5, timeout_ms=5000
        )
        held = [Stream(stub), Stream(stub)]
        replies = [s.ask(request) for s in held]
        client = GrpcOffloadClient(channel())
        answer = client.offload(OffloadFrame("digits", "d:1", "d", digit, 0, 0.1), 10.0)
        state = (client.streaming, client.fallbacks)
        for s in held:
            s.close()
    finally:
        for c in channels:
            c.close()
        admin.close()
        ctl.stop()
    assert [(r.sequence, r.status_code) for r in replies] == [(5, OK), (5, OK)]
    assert replies[0].model_id and answer.model_id == replies[0].model_id
    assert state == (False, 1)  # refused a third stream: unary, streams retried later
