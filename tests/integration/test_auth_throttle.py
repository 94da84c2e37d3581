"""Guessing operator tokens or enrollment secrets is throttled per caller address: a
brute-force loop against a real controller (TLS, port 0) from another loopback address
gets its first few answers and RESOURCE_EXHAUSTED after, its guesses never looked at,
while the right token and a real enrollment from elsewhere keep working."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from agent.controller_client import enrollment_channel
from agent.enroll import enroll
from agent.hardware import detect
from controller.cli.client import Connection, open_channel
from controller.grpc.throttle import FailureLimits
from edgefleet.v1 import admin_pb2, admin_pb2_grpc, device_pb2, device_pb2_grpc
from tests.conftest import TcpForwarder
from tests.fleet import controller_with_admin, status_code

pytestmark = pytest.mark.timeout(120)
LOOP_S = 2.0


def _loop(call: object) -> dict[str, int]:
    """Call for LOOP_S seconds as fast as answers come; status name -> count."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + LOOP_S
    while time.monotonic() < deadline:
        try:
            call()  # type: ignore[operator]
            name = "OK"
        except grpc.RpcError as exc:
            name = status_code(exc).name
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_wrong_credentials_are_throttled_per_address(tmp_path: Path) -> None:
    limits = FailureLimits()
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        ca = (ctl.config.data_dir / "pki" / "ca.pem").read_bytes()
        via_2 = TcpForwarder(ctl.grpc_port, source_host="127.0.0.2")
        via_3 = TcpForwarder(ctl.grpc_port, source_host="127.0.0.3")
        try:
            # operator tokens guessed from 127.0.0.2
            guesser = open_channel(Connection(f"127.0.0.1:{via_2.port}", "x" * 43, ca, 10.0))
            stub = admin_pb2_grpc.DeviceAdminServiceStub(guesser)
            counts = _loop(lambda: stub.ListDevices(admin_pb2.ListDevicesRequest(), timeout=5))
            tries = sum(counts.values())
            assert counts.get("UNAUTHENTICATED", 0) == limits.per_address, counts
            assert counts.get("RESOURCE_EXHAUSTED", 0) == tries - limits.per_address, counts
            assert tries > 5 * limits.per_address  # refused fast, not by tying up a worker
            print(f"operator-token guesses in {LOOP_S:.0f} s: {counts} ({tries / LOOP_S:.0f}/s,"
                  f" {limits.per_address} looked at)")  # fmt: skip
            # the right token, from another address, at once
            assert admin.devices() == []
            token = admin.register("cam-1", "auto")

            # enrollment secrets guessed from 127.0.0.3 (the token id is right, the secret not)
            token_id, _, _ = token.partition(".")
            channel = enrollment_channel(f"127.0.0.1:{via_3.port}", ca, 1 << 20)
            device = device_pb2_grpc.DeviceServiceStub(channel)
            wrong = device_pb2.EnrollRequest(token=f"{token_id}.{'y' * 43}", csr_pem="-")
            counts = _loop(lambda: device.Enroll(wrong, timeout=5))
            assert counts.get("UNAUTHENTICATED", 0) == limits.per_address, counts
            assert set(counts) == {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}, counts
            print(f"enrollment guesses in {LOOP_S:.0f} s: {counts}")
            # ... while the real device enrolls with its token, and the guesser's own
            # right operator token is refused too until its window has passed
            identity = enroll(tmp_path / "cam-1", f"127.0.0.1:{ctl.grpc_port}", token, detect(),
                              attempts=1)  # fmt: skip
            assert identity.device_id == ctl.registry.get("cam-1").device_id
            right_but_throttled = open_channel(
                Connection(f"127.0.0.1:{via_2.port}", ctl.operator_token, ca, 10.0)
            )
            with pytest.raises(grpc.RpcError) as err:
                admin_pb2_grpc.DeviceAdminServiceStub(right_but_throttled).ListDevices(
                    admin_pb2.ListDevicesRequest(), timeout=5
                )
            assert status_code(err.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "127.0.0.2" in err.value.details() and "retry in" in err.value.details()
            for c in (guesser, channel, right_but_throttled):
                c.close()
        finally:
            via_2.close()
            via_3.close()
