"""`rollout start` refuses a model version that does not exist or has nothing built."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, edgefleet_cli, start_controller, status_code
from tests.rollout_fleet import add_tiny


def _start(stub: rollouts_pb2_grpc.RolloutAdminServiceStub, model: str, version: int) -> None:
    stub.StartRollout(
        rollouts_pb2.StartRolloutRequest(model=model, version=version, selector={"site": "lab"},
                                         stages=[1.0], soak_seconds=1.0),
        timeout=10,
    )  # fmt: skip


def test_unknown_and_unbuilt_versions_are_refused(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    try:
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        with pytest.raises(grpc.RpcError) as err:
            _start(stub, "nosuch", 1)
        assert status_code(err.value) == grpc.StatusCode.NOT_FOUND

        version = add_tiny(admin, tmp_path, "tiny", 4)  # added, not built
        with pytest.raises(grpc.RpcError) as err:
            _start(stub, "tiny", version)
        assert status_code(err.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert "model build" in err.value.details()
        listed = stub.ListRollouts(rollouts_pb2.ListRolloutsRequest(), timeout=10)
        assert not listed.rollouts
    finally:
        admin.close()
        ctl.stop()


@pytest.mark.parametrize("gate", ["accuracy >= 0.9", "foo <= 1"])
def test_gate_on_an_unknown_metric_is_refused_at_start(tmp_path: Path, gate: str) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    try:
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.StartRollout(
                rollouts_pb2.StartRolloutRequest(model="tiny", version=1, stages=[1.0],
                                                 soak_seconds=1.0, gates=[gate]),
                timeout=10,
            )  # fmt: skip
        assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown metric" in err.value.details()
        cli = edgefleet_cli(ctl.config.data_dir, "rollout", "start", "tiny:1", "--gate", gate,
                            check=False)  # fmt: skip
        assert cli.returncode == 2, cli.stderr
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), cli.stderr
        assert "known metrics: p95_latency" in lines[0] and "estimated_accuracy" in lines[0]
        listed = stub.ListRollouts(rollouts_pb2.ListRolloutsRequest(), timeout=10)
        assert not listed.rollouts
    finally:
        admin.close()
        ctl.stop()
