"""Staged rollouts end to end: a real controller (built model versions, signed metadata),
20 agents on the real network paths (mutual-TLS gRPC pull + reports + artifact stream,
retained MQTT desired state), a three-stage rollout that completes, then a worse version
whose gate fails at the first stage and every device is back on the old one automatically."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import edgefleet_cli
from tests.rollout_fleet import VariantMetrics, add_and_build, rollout_rig, rollout_status, wait_for

N_AGENTS = 20
EDGEFLEET = Path(sys.executable).parent / "edgefleet"
Stub = rollouts_pb2_grpc.RolloutAdminServiceStub


def _start(stub: Stub, version: int) -> str:
    r = stub.StartRollout(
        rollouts_pb2.StartRolloutRequest(
            model="tiny", version=version, selector={"site": "lab"}, stages=[0.1, 0.5, 1.0],
            min_devices=2, soak_seconds=0.5, min_samples=100, max_concurrent_downloads=10,
        ),
        timeout=10,
    )  # fmt: skip
    return str(r.rollout.rollout_id)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rollout_succeeds_then_bad_version_rolls_back(tmp_path: Path) -> None:
    with rollout_rig(tmp_path) as rig:
        ctl, admin, stub = rig.ctl, rig.admin, rig.stub
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        v2 = add_and_build(admin, tmp_path, "tiny", 6)
        ctl.rollouts.metrics = VariantMetrics(ctl, bad=lambda v: f":{v2}:" in v)
        agents = rig.start_agents(N_AGENTS, site="lab")

        good = _start(stub, v1)
        wait_for(
            "v1 rollout to complete",
            lambda: rollout_status(stub, good).rollout.phase == "completed",
            timeout=180,
        )
        wait_for("every agent on v1", lambda: all(f":{v1}:" in (a.variant or "") for a in agents))
        status = rollout_status(stub, good)
        state = json.loads(status.state_json)
        assert len(state["devices"]) == N_AGENTS
        assert all(d["state"] == "healthy" for d in state["devices"])
        entered = [e.message for e in status.events if "entering stage" in e.message]
        assert len(entered) == 2, entered  # stage 1 -> 2 -> 3
        assert state["last_gates"] and all(g["status"] == "pass" for g in state["last_gates"])

        bad = _start(stub, v2)
        rolled_back = lambda: rollout_status(stub, bad).rollout.phase == "rolled_back"  # noqa: E731
        wait_for("v2 rollout to roll back", rolled_back, timeout=120)
        wait_for("every agent back on v1",
                 lambda: all(f":{v1}:" in (a.variant or "") for a in agents))  # fmt: skip
        status = rollout_status(stub, bad)
        state = json.loads(status.state_json)
        failed = [g for g in state["last_gates"] if g["status"] == "fail"]
        assert {g["metric"] for g in failed} >= {"p95_latency"}
        assert state["stage_index"] == 0  # failed at the first stage
        assert "halted" in " ".join(e.message for e in status.events)

        cli = edgefleet_cli(ctl.config.data_dir, "rollout", "status", bad, "--format", "json")
        shown = json.loads(cli.stdout)
        assert shown["state"]["phase"] == "rolled_back" and "p95_latency" in cli.stdout
        table = edgefleet_cli(ctl.config.data_dir, "rollout", "list").stdout
        assert good in table and "completed" in table and "rolled_back" in table
