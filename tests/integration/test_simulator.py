"""The fleet simulator against a real controller (gRPC on port 0, the Mosquitto it supervises,
SQLite): devices enroll, report telemetry that is stored, and follow a real rollout (real
health gates on their telemetry) to healthy; the CLI command; /readyz."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.app import Controller
from controller.simulate.errors import SimulationError
from controller.simulate.run import Simulation, SimulationConfig
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import (
    Admin,
    edgefleet_cli,
    postgres_available,
    postgres_database,
    start_controller,
)
from tests.rollout_fleet import add_and_build, speed_up, wait_for


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[Controller, Admin]]:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    try:
        yield ctl, admin
    finally:
        admin.close()
        ctl.stop()


def _simulation(ctl: Controller, admin: Admin, config: SimulationConfig) -> Simulation:
    ca = (ctl.config.data_dir / "pki" / "ca.pem").read_bytes()
    return Simulation(admin.channel, ca, admin.address, config)


def test_simulated_devices_enroll_report_and_follow_a_rollout(
    controller: tuple[Controller, Admin], tmp_path: Path
) -> None:
    ctl, admin = controller
    version = add_and_build(admin, tmp_path, "tiny", 8)
    speed_up(ctl)
    n = 20
    config = SimulationConfig(
        devices=n, processes=2, report_rate=4.0, heartbeat_interval_s=1.0, poll_interval_s=2.0,
        duration_s=60.0, frames_per_report=50, labels={"site": "sim"},
    )  # fmt: skip
    sim = _simulation(ctl, admin, config)
    sim.start()
    try:
        sim.wait_ready(60)
        devices = ctl.registry.list_devices({"site": "sim"})
        assert len(devices) == n
        wait_for("every device online", lambda: all(
            d.online for d in ctl.registry.list_devices({"site": "sim"})), 20)  # fmt: skip
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        rid = stub.StartRollout(
            rollouts_pb2.StartRolloutRequest(
                model="tiny", version=version, selector={"site": "sim"}, stages=[0.25, 1.0],
                min_devices=1, soak_seconds=0.5, min_samples=20,
            ),
            timeout=30,
        ).rollout.rollout_id  # fmt: skip

        def completed() -> bool:
            got = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=10)
            assert got.rollout.phase not in ("halted", "rolled_back", "aborted"), got.explanation
            return got.rollout.phase == "completed" and got.rollout.healthy == n

        try:
            wait_for("the rollout to complete on every simulated device", completed, 40)
        except AssertionError:
            got = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=10)
            raise AssertionError(f"rollout not completed: {got.explanation}\n"
                                 f"{got.state_json[:3000]}") from None  # fmt: skip
        statuses = ctl.rollouts.store.statuses([d.device_id for d in devices])
        assert {s.reported_state for s in statuses.values()} == {"committed"}
    finally:
        result = sim.stop()
    stats = result.stats
    assert stats["enrolled"] == n and stats["connected_at_end"] == n
    assert stats["updates"] == n and stats["update_errors"] == 0
    assert stats["downloaded_bytes"] > 0
    assert ctl.telemetry.flush(10)
    # every report the devices sent is stored; none refused as malformed or over its budget
    assert ctl.ingest.stats.telemetry_received == stats["reports"] > 0
    assert ctl.ingest.stats.dropped_invalid_report == 0
    assert ctl.ingest.stats.dropped_rate_limited == 0
    assert ctl.telemetry.stats.written == stats["reports"]


def test_simulate_command_prints_what_the_devices_did(
    controller: tuple[Controller, Admin],
) -> None:
    ctl, _admin = controller
    ran = edgefleet_cli(
        ctl.config.data_dir, "simulate", "--devices", "4", "--processes", "1", "--rate", "2",
        "--duration", "2", "--heartbeat", "0.5", "--format", "json",
    )  # fmt: skip
    result = json.loads(ran.stdout)
    assert result["devices"] == result["enrolled"] == result["connected_at_end"] == 4
    assert result["reports"] >= 4 and result["heartbeats"] >= 4
    assert len(ctl.registry.list_devices({"simulated": "true"})) == 4
    refused = edgefleet_cli(
        ctl.config.data_dir, "simulate", "--devices", "0", check=False
    )  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr


def test_a_simulation_that_cannot_enroll_says_why(controller: tuple[Controller, Admin]) -> None:
    ctl, admin = controller
    with pytest.raises(SimulationError, match="CA is not a PEM certificate"):
        Simulation(admin.channel, b"not a CA", admin.address, SimulationConfig(devices=1))
    with pytest.raises(SimulationError, match="devices must be"):
        SimulationConfig(devices=0).check()
    ca = (ctl.config.data_dir / "pki" / "ca.pem").read_bytes()
    nobody = "127.0.0.1:1"  # registered through the controller, enrolled where nothing listens
    sim = Simulation(admin.channel, ca, nobody, SimulationConfig(devices=1, processes=1))
    sim.start()
    with pytest.raises(SimulationError, match=r"process 1 failed: .*UNAVAILABLE"):
        sim.wait_ready(60)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL at 127.0.0.1:5432")
def test_readyz_follows_the_database_and_healthz_the_process(tmp_path: Path) -> None:
    with postgres_database() as url:
        ctl = start_controller(tmp_path / "controller", db=url)
        try:
            base = ctl.http_url
            assert _get(f"{base}/readyz") == (200, "ready\n")
            assert _get(f"{base}/healthz") == (200, "ok\n")
            import psycopg

            name = url.rsplit("/", 1)[1]
            admin_url = url.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert _get(f"{base}/readyz") == (503, "database unreachable\n")
            assert _get(f"{base}/healthz") == (200, "ok\n")
        finally:
            ctl.stop()
