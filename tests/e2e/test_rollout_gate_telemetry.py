"""A gate that fails on real telemetry: agents that actually run their model (ONNX Runtime)
publish real TelemetryReports over MQTT into the controller's TelemetryStore, which the
rollout gates read. v2 is a genuinely worse build of the same model (a far wider network:
several times the compute per frame), so its measured p95 latency fails the gate against the
control cohort still on v1, and every device is back on v1 — running it — without operator
action.

Six agents keep this CPU-bound test moderate; the 20-agent test in test_rollouts.py (metrics
stand-in) remains the scale test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.v1 import rollouts_pb2
from tests.inferring_agent import start_inferring_agents
from tests.rollout_fleet import add_and_build, rollout_rig, rollout_status, wait_for

N_AGENTS = 6


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_slower_version_fails_latency_gate_on_real_telemetry(tmp_path: Path) -> None:
    with rollout_rig(tmp_path) as rig:
        ctl, admin, stub = rig.ctl, rig.admin, rig.stub
        v1 = add_and_build(admin, tmp_path, "tiny", 4)
        v2 = add_and_build(admin, tmp_path, "tiny", 64)  # same task, ~100x the convolutions
        agents = rig.keep(start_inferring_agents(ctl, admin, rig.agents_dir, N_AGENTS, site="lab"))

        first = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=v1, selector={"site": "lab"}, stages=[1.0],
                soak_seconds=1.0, gates=["error_rate <= 0.01"], min_samples=20,
            ),
            timeout=10,
        ).rollout.rollout_id  # fmt: skip
        wait_for("v1 everywhere", lambda: rollout_status(stub, first).rollout.phase == "completed",
                 timeout=90)  # fmt: skip
        wait_for("every agent running v1",
                 lambda: all(f":{v1}:" in (a.running or "") for a in agents))  # fmt: skip

        bad = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=v2, selector={"site": "lab"}, stages=[0.34, 1.0],
                min_devices=2, soak_seconds=3.0, min_samples=30,
                gates=["p95_latency <= 1.2 * baseline", "error_rate <= 0.01"],
            ),
            timeout=10,
        ).rollout.rollout_id  # fmt: skip
        wait_for("v2 rollout to roll back", lambda: rollout_status(stub, bad).rollout.phase ==
                 "rolled_back", timeout=120)  # fmt: skip
        on_v1 = lambda: all(f":{v1}:" in (a.running or "") for a in agents)  # noqa: E731
        wait_for("every agent running v1 again", on_v1, timeout=60)

        status = rollout_status(stub, bad)
        state = json.loads(status.state_json)
        assert state["stage_index"] == 0  # failed at the first stage
        gates = {g["metric"]: g for g in state["last_gates"]}
        latency = gates["p95_latency"]
        assert latency["status"] == "fail", latency
        assert latency["value"] > latency["threshold"] > 0, latency
        print(f"gate: {latency['reason']}")
        canaries = [d["device_id"] for d in state["devices"] if d["stage"] == 0]
        assert 2 <= len(canaries) < N_AGENTS
        # The canaries really ran v2 (their telemetry said so) and are all on v1 now.
        assert all(a.frames > 0 and a.reports > 0 for a in agents)
        events = " ".join(e.message for e in status.events)
        assert "halted" in events
        assert all(f":{v1}:" in (a.variant or "") for a in agents)
