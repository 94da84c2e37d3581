"""`edgefleet-agent run` with no --model: the real agent process waits for its first rollout,
installs the model over the air, starts inference on it (telemetry names the variant), and
after a restart runs what OTA installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from controller.optimize.synthetic import synthetic_frames
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, start_controller
from tests.rollout_fleet import (
    AGENT_CLI,
    add_and_build,
    enroll_with_cli,
    speed_up,
    stop_process,
    wait_for,
)

AGENT = AGENT_CLI


def _run_agent(data_dir: Path, frames: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        str(AGENT), "run", "--data-dir", str(data_dir), "--heartbeat-interval", "1",
        "--ota-poll", "1", "--ota-probation", "0.5", "--telemetry-interval", "0.5",
        "--source", str(frames), "--loop", "--fps", "20",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_agent_without_model_runs_what_ota_installs(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "agent.log"
    try:
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        speed_up(ctl)
        frames = tmp_path / "frames.npy"
        np.save(frames, synthetic_frames(16))
        data_dir = tmp_path / "agent"
        device_id = enroll_with_cli(admin, data_dir, "cam-1", site="lab")

        procs.append(_run_agent(data_dir, frames, log))
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        rid = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=v1, selector={"site": "lab"}, stages=[1.0],
                soak_seconds=1.0, gates=["error_rate <= 0.01"], min_samples=10,
            ),
            timeout=10,
        ).rollout.rollout_id  # fmt: skip

        def phase() -> str:
            r = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=10)
            return str(r.rollout.phase)

        wait_for("the rollout to complete", lambda: phase() == "completed", timeout=90)
        variant = ctl.models.selected_variant("tiny", v1, ctl.registry.get(device_id).profile)
        assert variant is not None
        # Inference started on the OTA model: its telemetry names the variant.
        assert ctl.telemetry.device_variant(device_id) == variant.variant_id
        assert procs[0].poll() is None, log.read_text()

        stop_process(procs[0])
        first_run = len(ctl.telemetry.sequences(device_id))
        procs.append(_run_agent(data_dir, frames, log))
        wait_for("telemetry from the restarted agent",
                 lambda: ctl.telemetry.sequences(device_id)[first_run:].count(1) > 0)  # fmt: skip
        assert ctl.telemetry.device_variant(device_id) == variant.variant_id
        assert "first model" in log.read_text()
    finally:
        for p in procs:
            stop_process(p)
        admin.close()
        ctl.stop()
