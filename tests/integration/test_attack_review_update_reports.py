"""Attack review: an enrolled device's update reports are bounded like the columns they go to.

ReportUpdateStatus and GetDesiredState stored (and logged at INFO, once per changed report)
whatever state and variant ids the device sent: megabytes per call on SQLite, a database error
on PostgreSQL (state is a 16-character column). Real controller, an enrolled device on the
mutual-TLS port."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, start_controller

MIB = 1 << 20
HUGE = "v" * MIB


@pytest.mark.timeout(60)
def test_oversized_update_reports_are_refused_and_not_stored(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    channel = None
    try:
        identity = enroll(
            tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1
        )
        channel = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 8 * MIB
        )
        stub = rollouts_pb2_grpc.DesiredStateServiceStub(channel)
        # what the shipped agent sends is accepted
        stub.ReportUpdateStatus(
            rollouts_pb2.ReportUpdateStatusRequest(
                state="smoke_testing", variant_id="m:1:int8", current_variant="m:1:fp32"
            ),
            timeout=10,
        )
        refused = [
            rollouts_pb2.ReportUpdateStatusRequest(state="failed", variant_id=HUGE),
            rollouts_pb2.ReportUpdateStatusRequest(state="failed", current_variant=HUGE),
            rollouts_pb2.ReportUpdateStatusRequest(state="s" * 17, variant_id="m:1:int8"),
        ]
        for request in refused:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ReportUpdateStatus(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetDesiredState(
                rollouts_pb2.GetDesiredStateRequest(current_variant=HUGE), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stored = ctl.rollouts.store.statuses([identity.device_id])[identity.device_id]
        assert (stored.reported_state, stored.reported_variant, stored.running_variant) == (
            "smoke_testing",
            "m:1:int8",
            "m:1:fp32",
        )
    finally:
        if channel is not None:
            channel.close()
        admin.close()
        ctl.stop()
