"""OTA polls that change nothing are quiet: once a device is settled, its polls (every
second here; 30 s by default) log at debug level only, on the controller and the agent;
changes still log at info."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from edgefleet.v1 import rollouts_pb2
from tests.rollout_fleet import VariantMetrics, add_and_build, rollout_rig, rollout_status, wait_for

WATCHED = ("controller.services.rollouts", "controller.grpc", "agent.ota")


@pytest.mark.timeout(120)
def test_polls_that_change_nothing_log_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with rollout_rig(tmp_path) as rig:
        ctl, admin, stub = rig.ctl, rig.admin, rig.stub
        v1 = add_and_build(admin, tmp_path, "tiny", 8)
        ctl.rollouts.metrics = VariantMetrics(ctl, bad=lambda v: False)
        rig.start_agents(1, site="lab")
        rid = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(model="tiny", version=v1, selector={"site": "lab"},
                                             stages=[1.0], soak_seconds=0.0),
            timeout=10,
        ).rollout.rollout_id  # fmt: skip
        wait_for("rollout complete", lambda: rollout_status(stub, rid).rollout.phase ==
                 "completed", timeout=60)  # fmt: skip
        changes = [r for r in caplog.records if r.name.startswith(WATCHED)
                   and r.levelno >= logging.INFO and "update" in r.getMessage()]  # fmt: skip
        assert changes, "changes are logged at info"
        time.sleep(1.5)  # let the last change settle
        caplog.clear()
        time.sleep(3.5)  # three or four polls (poll interval 1 s)
        noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                 if r.name.startswith(WATCHED) and r.levelno >= logging.INFO]  # fmt: skip
        assert noisy == [], noisy
        quiet = [r for r in caplog.records
                 if r.name.startswith(WATCHED) and "no change" in r.getMessage()]  # fmt: skip
        assert len(quiet) >= 2 and all(r.levelno == logging.DEBUG for r in quiet)
