"""Set-based rollout targets through the real path: `edgefleet rollout start --target
'site in (lab,edge),!retired'` against a controller with enrolled, labelled devices picks
exactly the matching ones; a malformed selector is a one-line CLI error, and
INVALID_ARGUMENT on the wire."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from agent.enroll import enroll
from agent.hardware import detect
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, edgefleet_cli, start_controller, status_code
from tests.rollout_fleet import add_and_build

LABELS = {
    "lab-1": {"site": "lab"},
    "edge-1": {"site": "edge", "tier": "canary"},
    "edge-old": {"site": "edge", "retired": "yes"},
    "store-1": {"site": "store"},
}


@pytest.mark.timeout(120)
def test_set_based_target_selects_the_matching_devices(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    try:
        facts = detect()
        ids = {}
        for name, labels in LABELS.items():
            token = admin.register(name, "auto", **labels)
            ids[name] = enroll(tmp_path / name, f"127.0.0.1:{ctl.grpc_port}", token,
                               facts).device_id  # fmt: skip
        version = add_and_build(admin, tmp_path, "tiny", 4)

        bad = edgefleet_cli(ctl.config.data_dir, "rollout", "start", f"tiny:{version}",
                            "--target", "site in (lab", check=False)  # fmt: skip
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.strip().count("\n") == 0 and "selector" in bad.stderr, bad.stderr
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.StartRollout(rollouts_pb2.StartRolloutRequest(
                model="tiny", version=version, target="site notin lab"), timeout=10)  # fmt: skip
        assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected '('" in err.value.details()

        started = edgefleet_cli(
            ctl.config.data_dir, "rollout", "start", f"tiny:{version}", "--target",
            "site in (lab,edge),!retired", "--stages", "100%", "--soak", "1h", "--format", "json",
        )  # fmt: skip
        rid = json.loads(started.stdout)["id"]
        shown = json.loads(
            edgefleet_cli(ctl.config.data_dir, "rollout", "status", rid, "--format", "json").stdout
        )
        picked = {d["device_id"] for d in shown["state"]["devices"]}
        assert picked == {ids["lab-1"], ids["edge-1"]}, shown["state"]
        assert shown["spec"]["selector"] == [
            {"key": "site", "op": "in", "values": ["lab", "edge"]},
            {"key": "retired", "op": "!exists", "values": []},
        ]
        assert "targets: site in (lab,edge),!retired" in shown["explanation"]
    finally:
        admin.close()
        ctl.stop()
