"""Adaptive audit rate end to end: a real controller plans a device's audit fraction from its
telemetry and publishes it in the device's desired state over MQTT; the running agent's audit
sampler follows it (within the device budget), and `fleet status` reports it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.app import Controller
from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc
from tests.fleet import Admin, start_controller
from tests.integration.test_agent_runtime import (  # noqa: F401  (fixtures)
    DIGITS,
    HAVE_EDGE,
    RunningAgent,
    cloud_path,
    enroll_agent,
    variant,
    wait_for,
)

pytestmark = pytest.mark.skipif(not HAVE_EDGE, reason=f"digits models not in {DIGITS}")


@pytest.fixture
def planning_controller(tmp_path: Path) -> Iterator[Controller]:
    c = start_controller(
        tmp_path / "controller", cloud_models=(f"digits={cloud_path()}",),
        audit_plan_interval_s=0.5, audit_max_device_fps=20.0,
    )  # fmt: skip
    yield c
    c.stop()


def test_the_controller_raises_a_devices_audit_fraction_and_the_agent_follows(
    planning_controller: Controller,
    variant: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    with np.load(DIGITS / "test_corrupted.npz") as data:
        x, y = data["x"][:200], data["y"][:200]
    share = tmp_path / "share.npz"
    np.savez(share, x=x, y=y)
    admin = Admin(planning_controller)
    agent = RunningAgent(
        enroll_agent(admin, tmp_path, "cam-0"), model_dir=variant, source=str(share), loop=True,
        fps=40.0, audit_rate=0.02, telemetry_interval_s=0.5, heartbeat_interval_s=1.0,
        offload_deadline_s=2.0,
    )  # fmt: skip
    try:
        inference = agent.daemon.inference
        assert inference is not None
        sampler = inference.agent.audit
        wait_for(lambda: sampler.fraction > 0.02, 30, "the planned audit fraction to arrive")
        planned = planning_controller.audit_rates.fraction(agent.device_id)
        assert sampler.fraction == pytest.approx(planned, abs=1e-3)
        stub = fleet_pb2_grpc.FleetAdminServiceStub(admin.channel)
        time.sleep(0.6)
        status = stub.FleetStatus(fleet_pb2.FleetStatusRequest(), timeout=10)
        (device,) = status.devices
        assert device.audit_fraction == pytest.approx(planned, abs=1e-3)
        confident_fps = device.frames_per_second * (1 - device.offload_rate)
        assert planned * confident_fps <= 20.0 * 1.2  # within the device's audit budget
        assert status.window_seconds == 60
    finally:
        agent.stop()
        admin.close()
