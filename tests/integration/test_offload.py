"""Offload over a real gRPC server on loopback: servicer + dynamic batcher + cloud model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import grpc
import numpy as np
import pytest

from agent.inference import (
    Agent,
    AgentConfig,
    FixedThreshold,
    GrpcOffloadClient,
    OffloadFailed,
    OffloadFrame,
)
from agent.runtime import ModelHolder, load_variant
from agent.telemetry import TelemetryAggregator
from controller.grpc.offload_servicer import OffloadServicer, start_insecure_server
from controller.services.offload import LabelledPair
from controller.serving import BatchedModel, CloudModel, DynamicBatcher, Prediction
from edgefleet.v1 import inference_pb2, inference_pb2_grpc
from tests.conftest import free_port
from tests.unit.test_runtime_models import (
    PREPROCESSING,
    constant_weights,
    frames,
    linear_classifier,
    write_variant,
)

CLOUD_LABEL = 7
EDGE_LABEL = 3


@pytest.fixture(scope="module")
def cloud_model(tmp_path_factory: pytest.TempPathFactory) -> CloudModel:
    path = linear_classifier(
        tmp_path_factory.mktemp("cloud") / "cloud.onnx", *constant_weights(CLOUD_LABEL)
    )
    return CloudModel(path, PREPROCESSING, model_id="tiny-cloud:1", threads=1)


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> ModelHolder:
    # the edge model answers EDGE_LABEL, with confidence ~0.5 (bias 3 vs the other nine at 0)
    weights, bias = constant_weights(EDGE_LABEL)
    bias[EDGE_LABEL] = np.log(9.0)
    variant = write_variant(tmp_path_factory.mktemp("edge") / "v", (weights, bias))
    return ModelHolder(load_variant(variant, threads=1))


class Server:
    def __init__(self, models: dict[str, object]) -> None:
        self.pairs: list[LabelledPair] = []
        servicer = OffloadServicer(
            models,  # type: ignore[arg-type]
            identify=lambda _ctx: "device-1",
            on_pair=self.pairs.append,
        )
        self.server, self.port = start_insecure_server(servicer, max_workers=8)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture
def batched(cloud_model: CloudModel) -> Iterator[BatchedModel]:
    model = BatchedModel(cloud_model, max_batch_size=4, max_queue_delay_ms=1.0)
    yield model
    model.close()


def make_agent(
    holder: ModelHolder, client: GrpcOffloadClient, deadline_s: float, **config: object
) -> tuple[Agent, TelemetryAggregator]:
    telemetry = TelemetryAggregator("device-1", process_stats=lambda: (0, 0.0))
    agent = Agent(
        holder,
        FixedThreshold(config.pop("threshold", 1.01)),  # type: ignore[arg-type]
        client,
        telemetry,
        AgentConfig(offload_deadline_s=deadline_s, audit_fraction=0.0, **config),  # type: ignore[arg-type]
    )
    return agent, telemetry


def test_round_trip_returns_the_cloud_answer(holder: ModelHolder, batched: BatchedModel) -> None:
    server = Server({"tiny": batched})
    client = GrpcOffloadClient.insecure(server.target)
    agent, telemetry = make_agent(holder, client, deadline_s=5.0)
    try:
        results = [agent.infer(frame, f"f{i}") for i, frame in enumerate(frames(3))]
    finally:
        agent.close()
        client.close()
        server.stop()
    for result in results:
        assert (result.source, result.label, result.model_id) == (
            "cloud",
            CLOUD_LABEL,
            "tiny-cloud:1",
        )
        assert (result.edge_label, result.offloaded, result.offload_error) == (
            EDGE_LABEL,
            True,
            None,
        )
        assert result.edge_confidence == pytest.approx(0.5, abs=1e-3)
        assert result.offload_ms is not None and result.offload_ms <= result.total_ms
    assert [(p.device_id, p.frame_id, p.edge_label, p.cloud_label) for p in server.pairs] == [
        ("device-1", f"f{i}", EDGE_LABEL, CLOUD_LABEL) for i in range(3)
    ]
    report = telemetry.report()
    assert (report.frames, report.offloaded, report.offload_failures) == (3, 3, 0)
    assert (report.offload_agreement.pairs, report.offload_agreement.agreed) == (3, 0)
    assert report.offload_rtt_ms.count == 3


def test_slow_cloud_keeps_local_answer_within_deadline(
    holder: ModelHolder, cloud_model: CloudModel
) -> None:
    calls = [0]

    def slow(tensors: Sequence[np.ndarray]) -> list[Prediction]:
        calls[0] += 1
        if calls[0] > 1:  # after the warm-up (measured fast, so the frame is admitted)
            time.sleep(1.0)
        return cloud_model.run_batch(tensors)

    slow_model = BatchedModel(cloud_model, DynamicBatcher(slow, max_batch_size=4))
    server = Server({"tiny": slow_model})
    client = GrpcOffloadClient.insecure(server.target)
    deadline = 0.2
    agent, telemetry = make_agent(holder, client, deadline_s=deadline)
    try:
        client.offload(_request(), timeout_s=5.0)  # warm the channel up
        started = time.perf_counter()
        result = agent.infer(frames(1)[0], "slow")
        elapsed = time.perf_counter() - started
    finally:
        agent.close()
        client.close()
        server.stop()
        slow_model.close()
    assert (result.source, result.label, result.offloaded) == ("edge", EDGE_LABEL, True)
    assert result.offload_error == "deadline"
    assert elapsed < deadline + 0.15
    report = telemetry.report()
    assert report.offload_failures == 1 and report.errors["offload_deadline"] == 1


def test_full_queue_answers_resource_exhausted(cloud_model: CloudModel) -> None:
    started, release = threading.Event(), threading.Event()

    def blocked(tensors: Sequence[np.ndarray]) -> list[Prediction]:
        started.set()
        release.wait(10)
        return cloud_model.run_batch(tensors)

    batcher: DynamicBatcher[np.ndarray, Prediction] = DynamicBatcher(
        blocked, max_batch_size=1, max_queue_delay_ms=0, max_queue_size=1
    )
    server = Server({"tiny": BatchedModel(cloud_model, batcher)})
    client = GrpcOffloadClient.insecure(server.target)
    pool_results: list[object] = []

    def send() -> None:
        try:
            pool_results.append(client.offload(_request(), timeout_s=10))
        except OffloadFailed as exc:
            pool_results.append(exc)

    first = threading.Thread(target=send)
    second = threading.Thread(target=send)
    try:
        first.start()
        assert started.wait(5)  # the worker holds the first frame
        second.start()
        _wait_for(lambda: batcher.queue_depth() == 1)  # the second fills the queue
        with pytest.raises(OffloadFailed) as info:
            client.offload(_request(), timeout_s=5)
        assert info.value.kind == "overloaded"
    finally:
        release.set()
        first.join(10)
        second.join(10)
        client.close()
        server.stop()
        batcher.close()
    assert len(pool_results) == 2
    assert all(getattr(r, "label", None) == CLOUD_LABEL for r in pool_results)


def test_malformed_requests_map_to_status_codes(batched: BatchedModel) -> None:
    server = Server({"tiny": batched})
    channel = grpc.insecure_channel(server.target)
    stub = inference_pb2_grpc.OffloadServiceStub(channel)
    short = inference_pb2.Tensor(
        dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[8, 8], data=b"\x00" * 10
    )
    no_dtype = inference_pb2.Tensor(shape=[8, 8], data=b"\x00" * 64)
    bad_shape = inference_pb2.Tensor(
        dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[2, 2, 2, 2], data=b"\x00" * 16
    )
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (inference_pb2.OffloadRequest(model="tiny", frame=short), invalid),
        (inference_pb2.OffloadRequest(model="tiny", frame=no_dtype), invalid),
        (inference_pb2.OffloadRequest(model="tiny", frame=bad_shape), invalid),
        (inference_pb2.OffloadRequest(model="tiny"), invalid),
        (
            inference_pb2.OffloadRequest(
                model="tiny", image=inference_pb2.EncodedImage(format="png", data=b"junk")
            ),
            invalid,
        ),
        (inference_pb2.OffloadRequest(model="other", frame=short), grpc.StatusCode.NOT_FOUND),
    ]
    try:
        for request, code in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.Offload(request, timeout=5)
            assert info.value.code() == code, request
    finally:
        channel.close()
        server.stop()
    assert server.pairs == []


def test_controller_down_keeps_local_answer(holder: ModelHolder) -> None:
    client = GrpcOffloadClient.insecure(f"127.0.0.1:{free_port()}")
    deadline = 0.3
    agent, telemetry = make_agent(holder, client, deadline_s=deadline)
    try:
        timings, results = [], []
        for i, frame in enumerate(frames(3)):
            started = time.perf_counter()
            results.append(agent.infer(frame, f"f{i}"))
            timings.append(time.perf_counter() - started)
    finally:
        agent.close()
        client.close()
    assert all(r.source == "edge" and r.label == EDGE_LABEL for r in results)
    assert all(r.offload_error in ("unavailable", "deadline") for r in results)
    assert max(timings) < deadline + 0.15
    assert telemetry.report().offload_failures == 3


def test_audit_frames_answer_locally_and_record_the_pair_later(
    holder: ModelHolder, batched: BatchedModel
) -> None:
    server = Server({"tiny": batched})
    client = GrpcOffloadClient.insecure(server.target)
    telemetry = TelemetryAggregator("device-1", process_stats=lambda: (0, 0.0))
    agent = Agent(holder, FixedThreshold(0.0), client, telemetry, AgentConfig(audit_fraction=1.0))
    try:
        result = agent.infer(frames(1)[0], "audit-0")
        assert (result.source, result.audited, result.offloaded) == ("edge", True, False)
        _wait_for(lambda: len(server.pairs) == 1)
        _wait_for(lambda: telemetry.report().audit_agreement.pairs == 1)
    finally:
        agent.close()
        client.close()
        server.stop()
    assert server.pairs[0].audit


def test_run_loop_skips_and_counts_bad_frames(holder: ModelHolder) -> None:
    telemetry = TelemetryAggregator("device-1", process_stats=lambda: (0, 0.0))
    agent = Agent(holder, FixedThreshold(0.0), None, telemetry)
    stream = [("a", frames(1)[0]), ("bad", np.zeros((2, 2, 2, 2), np.uint8)), ("b", frames(1)[0])]
    try:
        results = list(agent.run(stream))
    finally:
        agent.close()
    assert [r.frame_id for r in results] == ["a", "b"]
    report = telemetry.report()
    assert (report.frames, report.dropped_bad_frames) == (2, 1)


def _request() -> OffloadFrame:
    return OffloadFrame("tiny", "tiny:1:onnx-fp32", "x", frames(1)[0], EDGE_LABEL, 0.5)


def _wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
