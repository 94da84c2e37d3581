"""`edgefleet-agent run` rolls back a model that is too slow on the device, by itself.

The real agent process (CLI wiring, OTA over mutual TLS, retained MQTT desired state)
commits v1, then gets v2: a model that passes its smoke test but whose median local latency
on the running frame loop is far over the default latency budget (the frame period at
``--fps``). The probation feed, fed from the inference loop, must roll it back on the device
and report why, while the ``--results`` writer keeps receiving every answer (the two
listeners used to overwrite each other)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from controller.app import Controller
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
FPS = 200  # default latency budget: the frame period, 5 ms
SLOW_WIDTH = 200  # ~16 ms a frame on one core of the test machine; v1 (width 8) ~0.1 ms


def _rollout(stub: rollouts_pb2_grpc.RolloutAdminServiceStub, version: int) -> str:
    return str(
        stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=version, selector={"site": "lab"}, stages=[1.0],
                soak_seconds=1.0, gates=["error_rate <= 0.01"], min_samples=10,
            ),
            timeout=10,
        ).rollout.rollout_id
    )  # fmt: skip


def _phase(stub: rollouts_pb2_grpc.RolloutAdminServiceStub, rid: str) -> str:
    r = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=10)
    return str(r.rollout.phase)


def _reported(ctl: Controller, device_id: str) -> tuple[str, str, str]:
    st = ctl.rollouts.store.statuses([device_id])[device_id]
    return st.reported_state, st.reported_variant, st.reported_reason


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_too_slow_model_is_rolled_back_on_device_and_results_keep_flowing(
    tmp_path: Path,
) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    log = tmp_path / "agent.log"
    results = tmp_path / "results.jsonl"
    proc: subprocess.Popen[bytes] | None = None
    try:
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        v2 = add_and_build(admin, tmp_path, "tiny", SLOW_WIDTH)
        speed_up(ctl)
        frames = tmp_path / "frames.npy"
        np.save(frames, synthetic_frames(16))
        data_dir = tmp_path / "agent"
        device_id = enroll_with_cli(admin, data_dir, "cam-1", site="lab")
        profile = ctl.registry.get(device_id).profile
        ids = {}
        for version in (v1, v2):
            variant = ctl.models.selected_variant("tiny", version, profile)
            assert variant is not None
            ids[version] = variant.variant_id

        cmd = [
            str(AGENT), "run", "--data-dir", str(data_dir), "--heartbeat-interval", "1",
            "--ota-poll", "1", "--ota-probation", "4", "--telemetry-interval", "0.5",
            "--source", str(frames), "--loop", "--fps", str(FPS), "--results", str(results),
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        first = _rollout(stub, v1)
        wait_for(
            "v1 rolled out",
            lambda: (
                _phase(stub, first) == "completed"
                and _reported(ctl, device_id)[:2] == ("committed", ids[v1])
            ),
            timeout=90,
        )
        _rollout(stub, v2)
        wait_for(
            "v2 rolled back on the device",
            lambda: _reported(ctl, device_id)[0] == "rolled_back",
            timeout=90,
        )
        state, reported_variant, reason = _reported(ctl, device_id)
        assert reported_variant == ids[v2], (state, reported_variant, reason)
        assert "latency" in reason and "budget 5.0 ms" in reason, reason
        assert proc.poll() is None, log.read_text()
        # back on v1, and the results writer saw frames of both models
        wait_for(
            "v1 answering again",
            lambda: json.loads(results.read_text().splitlines()[-1])["variant_id"] == ids[v1],
            timeout=30,
        )
        answered = {json.loads(line)["variant_id"] for line in results.read_text().splitlines()}
        assert answered == {ids[v1], ids[v2]}
    except AssertionError:
        print(log.read_text()[-6000:] if log.exists() else "no agent log")
        raise
    finally:
        if proc is not None:
            stop_process(proc)
        admin.close()
        ctl.stop()
