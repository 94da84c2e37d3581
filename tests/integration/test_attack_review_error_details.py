"""Attack review: an error that quotes what a device sent stays short.

Refusals quoted the offending value whole: a DownloadArtifact for a 1 MiB "digest", or a
ReportBenchmarks naming 100,000-character variants, was answered with a status detail larger
than gRPC's metadata limit (the device saw RESOURCE_EXHAUSTED instead of NOT_FOUND or
INVALID_ARGUMENT) and logged at INFO in full, a megabyte a call. Real controller, an enrolled
device on the mutual-TLS port."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from edgefleet.v1 import updates_pb2, updates_pb2_grpc
from tests.fleet import Admin, start_controller

MIB = 1 << 20


@pytest.mark.timeout(60)
def test_refusals_quoting_huge_values_keep_their_status_and_a_short_detail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.grpc.error_status")
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    channel = None
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
        channel = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 8 * MIB
        )
        updates = updates_pb2_grpc.UpdateServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            list(
                updates.DownloadArtifact(
                    updates_pb2.DownloadArtifactRequest(sha256="a" * MIB), timeout=10
                )
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as unknown:
            updates.ReportBenchmarks(
                updates_pb2.ReportBenchmarksRequest(
                    results=[updates_pb2.BenchResult(variant_id="v" * 100_000, ok=False)]
                ),
                timeout=10,
            )
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for refused in (missing.value, unknown.value):
            assert len(refused.details() or "") <= 1100
        assert max(len(r.getMessage()) for r in caplog.records) <= 1300
    finally:
        if channel is not None:
            channel.close()
        admin.close()
        ctl.stop()
