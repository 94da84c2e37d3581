"""The operator-labelled audit channel and windows through the CLI, as an operator uses them:
an agent offloads digits frames to a real controller, `fleet frames` lists what the cloud
answered, `fleet label` gives one its true class, `fleet status --window` shows the labelled
pair in the estimate's evidence; bad input is a one-line error and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.app import Controller
from tests.fleet import Admin, edgefleet_cli
from tests.integration.test_agent_runtime import (  # noqa: F401  (fixtures)
    DIGITS,
    HAVE_EDGE,
    RunningAgent,
    admin,
    controller,
    enroll_agent,
    variant,
    wait_for,
)

pytestmark = pytest.mark.skipif(not HAVE_EDGE, reason=f"digits models not in {DIGITS}")


def test_frames_label_and_windowed_status(
    controller: Controller,  # noqa: F811  (the fixtures of test_agent_runtime)
    admin: Admin,  # noqa: F811
    variant: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    with np.load(DIGITS / "test_corrupted.npz") as data:
        x, y = data["x"][:80], data["y"][:80]
    share = tmp_path / "share.npz"
    np.savez(share, x=x, y=y)
    agent = RunningAgent(
        enroll_agent(admin, tmp_path, "cam-0"), model_dir=variant, source=str(share),
        audit_rate=0.3, telemetry_interval_s=0.5, heartbeat_interval_s=1.0,
        offload_deadline_s=2.0,
    )  # fmt: skip
    data_dir = controller.config.data_dir
    try:
        assert agent.daemon.inference is not None and agent.daemon.inference.done.wait(60)
        labels = controller.telemetry.accuracy.labels
        wait_for(lambda: labels.awaiting(), 10, "frames waiting for a label")

        listed = json.loads(edgefleet_cli(data_dir, "fleet", "frames", "--format", "json").stdout)
        frames = listed["frames"]
        assert frames and all(f["device_id"] == agent.device_id for f in frames)
        first = frames[0]
        assert first["kind"] in ("offloaded", "audit") and first["label"] is None
        index = int(first["frame_key"].rsplit(":", 1)[1])  # the agent's frame id: source:index
        truth = str(int(y[index]))

        labelled = json.loads(
            edgefleet_cli(
                data_dir, "fleet", "label", first["frame_key"], truth, "--format", "json"
            ).stdout
        )
        assert (
            labelled["label"]["label"] == int(truth) and labelled["frame_key"] == first["frame_key"]
        )
        assert labels.counts("digits", 0) is not None

        def reported() -> bool:
            totals = controller.telemetry.device_totals(0).get(agent.device_id)
            return totals is not None and totals.frames == 80

        wait_for(reported, 30, "every frame reported")
        status = json.loads(
            edgefleet_cli(data_dir, "fleet", "status", "--window", "10m", "--format", "json").stdout
        )
        assert status["window_seconds"] == 600
        (device,) = status["devices"]
        evidence = device["accuracy_evidence"]
        assert device["frames"] == 80 and evidence["labelled_pairs"] == 1
        assert evidence["audit_pairs"] + evidence["offload_pairs"] == device["agreement_pairs"]
        assert evidence["method"] in ("pairs", "cbpe") and evidence["cbpe"] is not None
        low, high = device["accuracy_ci95"]
        assert 0.0 <= low <= high <= 1.0

        bad = edgefleet_cli(data_dir, "fleet", "status", "--window", "soon", check=False)
        assert (
            bad.returncode != 0 and "--window" in bad.stderr and len(bad.stderr.splitlines()) == 1
        )
        missing = edgefleet_cli(data_dir, "fleet", "label", "nobody/0", "3", check=False)
        assert missing.returncode != 0 and "fleet frames" in missing.stderr
        wrong = edgefleet_cli(
            data_dir, "fleet", "label", first["frame_key"], "giraffe", check=False
        )
        assert wrong.returncode != 0 and "not a class" in wrong.stderr
    finally:
        agent.stop()
