"""A device already running the rollback target counts as rolled back at once, on the real
paths (controller, mutual-TLS gRPC pulls and reports, MQTT desired state): it does not sit
in ``rolling_back`` until its probation window ends.

The agents install v1 and stay in a long probation (the rollout that brought it is aborted
meanwhile); a second rollout of v1 finds them already on it; rolling that one back asks
them to go back to v1 — where they are — and the rollback is over in seconds, well inside
the probation window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet.v1 import rollouts_pb2
from tests.rollout_fleet import VariantMetrics, add_and_build, rollout_rig, rollout_status, wait_for

PROBATION_S = 120.0


@pytest.mark.timeout(120)
def test_device_on_the_rollback_target_is_rolled_back_at_once(tmp_path: Path) -> None:
    with rollout_rig(tmp_path) as rig:
        ctl, admin, stub = rig.ctl, rig.admin, rig.stub
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        ctl.rollouts.metrics = VariantMetrics(ctl, bad=lambda v: False)
        agents = rig.start_agents(2, probation_s=PROBATION_S, site="lab")

        def start() -> str:
            return str(stub.StartRollout(
                rollouts_pb2.StartRolloutRequest(model="tiny", version=v1,
                                                 selector={"site": "lab"}, stages=[1.0],
                                                 soak_seconds=0.0),
                timeout=10,
            ).rollout.rollout_id)  # fmt: skip

        first = start()
        wait_for("v1 installed, in probation", lambda: rollout_status(stub, first).rollout.phase
                 == "promoting", timeout=60)  # fmt: skip
        assert all(f":{v1}:" in (a.variant or "") for a in agents)
        assert all(a.service.updater.state.phase == "probation" for a in agents)
        stub.RolloutCommand(rollouts_pb2.RolloutCommandRequest(rollout_id=first, command="abort"),
                            timeout=10)  # fmt: skip

        second = start()
        wait_for("second v1 rollout complete", lambda: rollout_status(stub, second).rollout.phase
                 == "completed", timeout=30)  # fmt: skip
        state = json.loads(rollout_status(stub, second).state_json)
        assert all(d["reason"] == "already on target" for d in state["devices"]), state

        began = time.monotonic()
        stub.RolloutCommand(
            rollouts_pb2.RolloutCommandRequest(rollout_id=second, command="rollback"), timeout=10
        )
        wait_for("rolled back", lambda: rollout_status(stub, second).rollout.phase ==
                 "rolled_back", timeout=20)  # fmt: skip
        assert time.monotonic() - began < PROBATION_S / 4
        assert all(a.service.updater.state.phase == "probation" for a in agents)  # still
        state = json.loads(rollout_status(stub, second).state_json)
        assert all(d["state"] == "rolled_back" for d in state["devices"]), state
        assert all(f":{v1}:" in (a.variant or "") for a in agents)
