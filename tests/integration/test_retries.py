"""Retries against real servers on loopback (port 0): the update client against a real gRPC
UpdateService that fails on purpose, and enrollment against a real controller behind a
forwarder that drops connections (CA fetch and Enroll RPC both retried)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent.enroll import enroll
from agent.errors import ControllerUnreachable
from agent.hardware import detect
from agent.updates_client import UpdateClient, UpdateRefused
from edgefleet.errors import NotFound
from edgefleet.v1 import updates_pb2, updates_pb2_grpc
from tests.conftest import TcpForwarder
from tests.fleet import Admin, start_controller

ARTIFACT = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(ARTIFACT).hexdigest()
CHUNK = 1024


class FlakyUpdates(updates_pb2_grpc.UpdateServiceServicer):
    """Fails the first ``fail_first`` calls of each RPC with ``code``; streams break after
    ``break_after`` chunks per call (0: never)."""

    def __init__(self) -> None:
        self.fail_first, self.code, self.break_after = 0, grpc.StatusCode.UNAVAILABLE, 0
        self.calls: dict[str, int] = {}
        self.offsets: list[int] = []

    def _flake(self, name: str, context: grpc.ServicerContext) -> None:
        n = self.calls[name] = self.calls.get(name, 0) + 1
        if n <= self.fail_first:
            context.abort(self.code, f"{name} flaking ({n})")

    def GetMetadata(self, request, context):
        self._flake("GetMetadata", context)
        if request.name != "root.json":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no {request.name}")
        return updates_pb2.GetMetadataResponse(data=b'{"signed": {}}')

    def DownloadArtifact(self, request, context):
        self._flake("DownloadArtifact", context)
        self.offsets.append(request.offset)
        for sent, start in enumerate(range(request.offset, len(ARTIFACT), CHUNK)):
            if self.break_after and sent == self.break_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")
            yield updates_pb2.ArtifactChunk(
                data=ARTIFACT[start : start + CHUNK], offset=start, total_size=len(ARTIFACT)
            )

    def ListBenchCandidates(self, request, context):
        self._flake("ListBenchCandidates", context)
        return updates_pb2.ListBenchCandidatesResponse()

    def ReportBenchmarks(self, request, context):
        self._flake("ReportBenchmarks", context)
        return updates_pb2.ReportBenchmarksResponse()


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyUpdates, grpc.Channel]]:
    servicer = FlakyUpdates()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    updates_pb2_grpc.add_UpdateServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield servicer, channel
    finally:
        channel.close()
        server.stop(None)


def client(channel: grpc.Channel, slept: list[float], attempts: int = 3) -> UpdateClient:
    return UpdateClient(channel, timeout_s=5, attempts=attempts, sleep=slept.append)


def test_unary_calls_retry_transient_failures(flaky: tuple[FlakyUpdates, grpc.Channel]) -> None:
    servicer, channel = flaky
    servicer.fail_first = 2
    slept: list[float] = []
    updates = client(channel, slept)
    assert updates.metadata("root.json") == b'{"signed": {}}'
    updates.bench_candidates()
    updates.report_benchmarks([])
    assert servicer.calls == {"GetMetadata": 3, "ListBenchCandidates": 3, "ReportBenchmarks": 3}
    assert len(slept) == 6
    assert all(0.4 <= d <= 0.6 for d in slept[0::2]) and all(0.8 <= d <= 1.2 for d in slept[1::2])


def test_unary_calls_give_up_or_refuse(flaky: tuple[FlakyUpdates, grpc.Channel]) -> None:
    servicer, channel = flaky
    servicer.fail_first = 10
    slept: list[float] = []
    with pytest.raises(ControllerUnreachable, match="after 3 attempts \\(UNAVAILABLE\\)"):
        client(channel, slept).metadata("root.json")
    assert servicer.calls["GetMetadata"] == 3 and len(slept) == 2

    servicer.calls.clear()
    servicer.code = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(UpdateRefused, match="PERMISSION_DENIED"):
        client(channel, slept).bench_candidates()
    assert servicer.calls["ListBenchCandidates"] == 1 and len(slept) == 2  # no retry

    servicer.fail_first = 0
    with pytest.raises(NotFound):
        client(channel, slept).metadata("2.root.json")


def test_stream_resumes_at_its_offset_and_progress_renews_the_budget(
    flaky: tuple[FlakyUpdates, grpc.Channel], tmp_path: Path
) -> None:
    servicer, channel = flaky
    servicer.break_after = 3  # 10 chunks: breaks 3 times, far more than 2 attempts' budget
    slept: list[float] = []
    size = client(channel, slept, attempts=2).download(SHA, tmp_path / "a")
    assert size == len(ARTIFACT) and (tmp_path / "a").read_bytes() == ARTIFACT
    assert servicer.offsets == [0, 3 * CHUNK, 6 * CHUNK, 9 * CHUNK]
    assert len(slept) == 3 and all(0.4 <= d <= 0.6 for d in slept)  # each break: a fresh budget


def test_stream_without_progress_gives_up(
    flaky: tuple[FlakyUpdates, grpc.Channel], tmp_path: Path
) -> None:
    servicer, channel = flaky
    servicer.fail_first = 10
    slept: list[float] = []
    with pytest.raises(ControllerUnreachable, match="at byte 0: controller unreachable after 3"):
        client(channel, slept).download(SHA, tmp_path / "a")
    assert servicer.calls["DownloadArtifact"] == 3 and len(slept) == 2


def test_enroll_retries_the_ca_fetch_and_the_enroll_rpc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    # connection 0: first CA fetch (dropped), 1: second CA fetch, 2: the Enroll RPC's first
    # connection (dropped); gRPC reconnects for the retried Enroll.
    proxy = TcpForwarder(ctl.grpc_port, drop={0, 2})
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        threading.Event().wait(seconds)

    try:
        token = admin.register("cam-retry")
        caplog.set_level("WARNING", logger="agent")
        identity = enroll(
            tmp_path / "agent",
            f"127.0.0.1:{proxy.port}",
            token,
            detect(),
            attempts=6,
            sleep=sleep,
        )
    finally:
        proxy.close()
        admin.close()
        ctl.stop()
    assert identity.device_id and (tmp_path / "agent" / "identity.json").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("enroll: cannot reach the controller") for w in warnings), warnings
    assert any(w.startswith("enroll: controller unreachable (UNAVAILABLE") for w in warnings), (
        warnings
    )
    assert len(slept) >= 2 and proxy.accepted >= 4
