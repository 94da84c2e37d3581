"""Agents running the digits model against a real controller: real gRPC (mutual TLS) offloads
to the batched cloud model, real MQTT telemetry into the store, `fleet status` over the admin
API; store-and-forward through a cut connection, a dead controller, malformed telemetry and
oversized messages."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from agent.assembly import AgentConfig, build_agent
from agent.enroll import enroll
from agent.hardware import detect
from agent.inference.agent import Result
from agent.pack import pack_model
from controller.app import Controller
from edgefleet import topics
from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc, inference_pb2, inference_pb2_grpc
from tests.conftest import REPO, TcpForwarder
from tests.fleet import Admin, start_controller, status_code

DIGITS = Path(os.environ.get("EDGEFLEET_DIGITS_DIR", REPO / "examples" / "digits"))
HAVE_EDGE = (DIGITS / "edge.onnx").is_file() and (DIGITS / "test_corrupted.npz").is_file()
HAVE_CLOUD = (DIGITS / "cloud.onnx").is_file()
pytestmark = pytest.mark.skipif(not HAVE_EDGE, reason=f"digits models not in {DIGITS}")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class RunningAgent:
    """An enrolled agent daemon on a thread, collecting its results."""

    def __init__(self, data_dir: Path, **options: object) -> None:
        self.results: list[Result] = []
        self.daemon = build_agent(
            AgentConfig(data_dir=data_dir, **options),  # type: ignore[arg-type]
            listeners=[lambda e: self.results.append(e) if isinstance(e, Result) else None],
        )
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    @property
    def device_id(self) -> str:
        return self.daemon.identity.device_id

    def stop(self) -> None:
        self.daemon.stopping.set()
        self.thread.join(15)


@pytest.fixture
def variant(tmp_path: Path) -> Path:
    out = tmp_path / "variant"
    pack_model(
        DIGITS / "edge.onnx", DIGITS / "preprocess.json", out, DIGITS / "labels.txt", "digits"
    )
    return out


def cloud_path() -> Path:
    return DIGITS / "cloud.onnx" if HAVE_CLOUD else DIGITS / "edge.onnx"


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = start_controller(
        tmp_path / "controller",
        cloud_models=(f"digits={cloud_path()}",),
        max_message_bytes=256 * 1024,
    )
    yield c
    c.stop()


@pytest.fixture
def admin(controller: Controller) -> Iterator[Admin]:
    a = Admin(controller)
    yield a
    a.close()


def enroll_agent(admin: Admin, tmp_path: Path, name: str) -> Path:
    token = admin.register(name)
    enroll(tmp_path / name, admin.address, token, detect(), attempts=1)
    return tmp_path / name


def shards(tmp_path: Path, n: int) -> list[tuple[Path, np.ndarray]]:
    with np.load(DIGITS / "test_corrupted.npz") as data:
        x, y = data["x"], data["y"]
    out = []
    for i, idx in enumerate(np.array_split(np.arange(len(x)), n)):
        path = tmp_path / f"share-{i}.npz"
        np.savez(path, x=x[idx], y=y[idx])
        out.append((path, y[idx]))
    return out


def fleet_status(admin: Admin) -> fleet_pb2.FleetStatusResponse:
    stub = fleet_pb2_grpc.FleetAdminServiceStub(admin.channel)
    return stub.FleetStatus(fleet_pb2.FleetStatusRequest(window_seconds=600), timeout=10)


@pytest.mark.skipif(not HAVE_CLOUD, reason="digits cloud.onnx not there")
def test_three_agents_fleet_status_accuracy_ci(
    controller: Controller, admin: Admin, variant: Path, tmp_path: Path
) -> None:
    agents = []
    truths = {}
    for i, (share, labels) in enumerate(shards(tmp_path, 3)):
        data_dir = enroll_agent(admin, tmp_path, f"cam-{i}")
        agent = RunningAgent(
            data_dir,
            model_dir=variant,
            source=str(share),
            audit_rate=0.3,
            telemetry_interval_s=0.5,
            heartbeat_interval_s=1.0,
            offload_deadline_s=2.0,
        )
        agents.append(agent)
        truths[agent.device_id] = labels
    try:
        for agent in agents:
            assert agent.daemon.inference is not None
            assert agent.daemon.inference.done.wait(60)

        def reported() -> bool:
            devices = {d.device_id: d for d in fleet_status(admin).devices}
            return all(devices[a.device_id].frames == len(truths[a.device_id]) for a in agents)

        wait_for(reported, 30, "every frame reported")
        devices = {d.device_id: d for d in fleet_status(admin).devices}
        for agent in agents:
            d = devices[agent.device_id]
            labels = truths[agent.device_id]
            by_index = {int(r.frame_id.rsplit(":", 1)[1]): r.label for r in agent.results}
            true_accuracy = np.mean([by_index[i] == labels[i] for i in range(len(labels))])
            assert d.variant_id == "digits:1:onnx-fp32" and d.model == "digits"
            assert d.has_latency and 0 < d.p50_latency_ms <= d.p95_latency_ms
            assert 0 < d.offload_rate < 0.6
            assert d.has_accuracy and d.agreement_pairs > 0
            assert d.accuracy_low <= true_accuracy <= d.accuracy_high, (
                d.accuracy_low,
                true_accuracy,
                d.accuracy_high,
            )
            assert d.cloud_pairs >= d.agreement_pairs  # the controller answered every pair
    finally:
        for agent in agents:
            agent.stop()


def store_and_forward(
    controller: Controller, admin: Admin, variant: Path, tmp_path: Path, outage_s: float
) -> None:
    assert controller.broker is not None
    proxy = TcpForwarder(controller.broker.port)  # between the agent and the broker
    agent = RunningAgent(
        enroll_agent(admin, tmp_path, "cam-sf"),
        model_dir=variant,
        source=str(DIGITS / "test_corrupted.npz"),
        loop=True,
        fps=50,
        telemetry_interval_s=0.2,
        heartbeat_interval_s=1.0,
        mqtt_url=f"mqtt://127.0.0.1:{proxy.port}",
    )
    store = controller.telemetry
    try:
        wait_for(lambda: len(store.sequences(agent.device_id)) >= 3, 20, "first reports")
        proxy.cut()
        cut_at = len(store.sequences(agent.device_id))
        time.sleep(outage_s)
        assert agent.daemon.mqtt is not None and not agent.daemon.mqtt.connected
        spooled = len(list((agent.daemon.config.data_dir / "telemetry-spool").glob("*.report")))
        assert spooled >= int(outage_s / 0.2 * 0.7)  # reports waited on disk
        proxy.restore()
        publisher_seq = agent.daemon.telemetry
        assert publisher_seq is not None

        def caught_up() -> bool:
            seqs = store.sequences(agent.device_id)
            return len(seqs) > cut_at + spooled and not any(
                (agent.daemon.config.data_dir / "telemetry-spool").glob("*.report")
            )

        wait_for(caught_up, 60, "spooled reports delivered")
        seqs = store.sequences(agent.device_id)
        assert seqs == list(range(1, len(seqs) + 1)), "a report was lost or reordered"
        assert store.stats.dropped_queue_full == 0
    finally:
        agent.stop()
        proxy.close()


def test_store_and_forward_short_outage(
    controller: Controller, admin: Admin, variant: Path, tmp_path: Path
) -> None:
    store_and_forward(controller, admin, variant, tmp_path, outage_s=3.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_store_and_forward_30s_outage(
    controller: Controller, admin: Admin, variant: Path, tmp_path: Path
) -> None:
    store_and_forward(controller, admin, variant, tmp_path, outage_s=30.0)


def test_dead_controller_agents_answer_locally(
    controller: Controller, admin: Admin, variant: Path, tmp_path: Path
) -> None:
    agent = RunningAgent(
        enroll_agent(admin, tmp_path, "cam-dead"),
        model_dir=variant,
        source=str(DIGITS / "test_corrupted.npz"),
        loop=True,
        offload_threshold=0.999,  # nearly every frame is hard
        offload_deadline_s=0.2,
        telemetry_interval_s=0.5,
    )
    try:
        wait_for(lambda: any(r.source == "cloud" for r in agent.results), 20, "cloud answers")
        controller.stop()
        before = len(agent.results)
        wait_for(lambda: len(agent.results) >= before + 30, 20, "frames after the kill")
        after = agent.results[before + 10 : before + 30]  # past frames in flight at the kill
        assert all(r.source == "edge" and r.offload_error for r in after)
        assert max(r.total_ms for r in after) < 200 + 100  # deadline + grace, never a stall
        assert agent.daemon.telemetry is not None
    finally:
        agent.stop()


def test_malformed_telemetry_is_counted_and_dropped(
    controller: Controller, admin: Admin, tmp_path: Path
) -> None:
    from edgefleet.v1 import report_pb2

    data_dir = enroll_agent(admin, tmp_path, "cam-bad")
    from agent.identity import Identity

    ident = Identity.load(data_dir)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ident.mqtt_username)
    client.username_pw_set(ident.mqtt_username, ident.mqtt_password)
    assert controller.broker is not None
    client.connect("127.0.0.1", controller.broker.port)
    client.loop_start()
    try:
        wait_for(client.is_connected, 10, "the reporter to connect")
        topic = topics.device_topic(ident.device_id, topics.TELEMETRY)
        bad_histogram = report_pb2.TelemetryReport(
            device_id=ident.device_id,
            sequence=1,
            frames=1,
            local_latency_ms=report_pb2.Histogram(bounds=[1.0, 2.0], counts=[1], count=1),
        )
        other_device = report_pb2.TelemetryReport(device_id="someone-else", sequence=2)
        good = report_pb2.TelemetryReport(
            device_id=ident.device_id, sequence=3, frames=5, interval_end_unix_ms=1
        )
        for payload in (b"\xff\xfe not protobuf", bad_histogram.SerializeToString()):
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.publish(topic, other_device.SerializeToString(), qos=1).wait_for_publish(5)
        client.publish(topic, good.SerializeToString(), qos=1).wait_for_publish(5)
        stats = controller.ingest.stats
        wait_for(lambda: stats.telemetry_received >= 1, 10, "the good report")
        assert stats.dropped_malformed >= 1
        assert stats.dropped_invalid_report == 1
        assert stats.dropped_device_mismatch >= 1
        assert controller.telemetry.sequences(ident.device_id) == [3]
    finally:
        client.loop_stop()
        client.disconnect()


def test_oversized_offload_is_rejected(
    controller: Controller, admin: Admin, tmp_path: Path
) -> None:
    from agent.controller_client import device_channel
    from agent.identity import Credentials, Identity

    data_dir = enroll_agent(admin, tmp_path, "cam-big")
    ident = Identity.load(data_dir)
    channel = device_channel(ident.controller, Credentials.load(data_dir), 64 * 1024 * 1024)
    stub = inference_pb2_grpc.OffloadServiceStub(channel)
    try:
        big = inference_pb2.Tensor(
            dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[1024, 1024], data=bytes(1024 * 1024)
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Offload(inference_pb2.OffloadRequest(model="digits", frame=big), timeout=10)
        assert status_code(info.value) is grpc.StatusCode.RESOURCE_EXHAUSTED
        small = inference_pb2.Tensor(
            dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[32, 32], data=bytes(1024)
        )
        reply = stub.Offload(inference_pb2.OffloadRequest(model="digits", frame=small), timeout=10)
        assert reply.model_id.startswith("digits")
        with pytest.raises(grpc.RpcError) as bad:
            broken = inference_pb2.Tensor(
                dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=[32, 32], data=bytes(10)
            )
            stub.Offload(inference_pb2.OffloadRequest(model="digits", frame=broken), timeout=10)
        assert status_code(bad.value) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
