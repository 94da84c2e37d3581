"""An aborted rollout installs nothing more: a device assigned while its agent was off, whose
agent starts after the abort, finds no assignment (gRPC pull and retained MQTT desired state)
and installs nothing; a device that had installed keeps the variant, and the CLI says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from agent.ota.remote import DesiredStateClient
from edgefleet.v1 import rollouts_pb2
from tests.fleet import edgefleet_cli
from tests.rollout_fleet import (
    add_and_build,
    rollout_rig,
    rollout_status,
    start_agent,
    wait_for,
)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_abort_withdraws_assignment_of_a_device_that_had_not_installed(tmp_path: Path) -> None:
    with rollout_rig(tmp_path) as rig:
        ctl, admin, stub = rig.ctl, rig.admin, rig.stub
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        (online,) = rig.start_agents(1, site="lab")
        # A second device is registered and enrolled, but its agent is not running yet.
        off_dir = rig.agents_dir / "dev-off"
        token = admin.register("dev-off", "auto", site="lab")
        identity = enroll(off_dir, f"127.0.0.1:{ctl.grpc_port}", token, detect())

        rid = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=v1, selector={"site": "lab"}, stages=[1.0],
                min_devices=1, soak_seconds=600, max_concurrent_downloads=10,
            ),
            timeout=10,
        ).rollout.rollout_id  # fmt: skip
        wait_for("the online agent on v1", lambda: f":{v1}:" in (online.variant or ""))

        def device_state(device_id: str) -> str:
            state = json.loads(rollout_status(stub, rid).state_json)
            return next(d["state"] for d in state["devices"] if d["device_id"] == device_id)

        wait_for("the online device installed",
                 lambda: device_state(online.name) in ("installed", "healthy"))  # fmt: skip
        assert device_state(identity.device_id) == "assigned"

        aborted = edgefleet_cli(ctl.config.data_dir, "rollout", "abort", rid).stdout
        assert f"rollout {rid}: aborted" in aborted
        assert f"withdrew 1 assignments not installed yet ({identity.device_id})" in aborted
        assert f"1 devices had installed and keep the new variant ({online.name})" in aborted
        assert "rollout rollback" in aborted
        assert device_state(identity.device_id) == "withdrawn"

        # What the device's own pull returns now: nothing assigned.
        channel = device_channel(identity.controller, Credentials.load(off_dir), 1 << 20)
        try:
            assert DesiredStateClient(channel, 5.0).get(None) is None
        finally:
            channel.close()

        # Its agent starts (retained MQTT desired state + pulls) and installs nothing.
        late = rig.keep([start_agent(off_dir, identity)])[0]
        wait_for("the late agent on MQTT", lambda: late.mqtt.connected, timeout=30)
        time.sleep(5.0)  # several pull intervals; the tiny model installs in well under that
        assert late.variant is None
        assert f":{v1}:" in (online.variant or "")  # abort leaves installed devices alone

        status = edgefleet_cli(ctl.config.data_dir, "rollout", "status", rid).stdout
        assert "1 assignments withdrawn before install; 1 devices had installed" in status
