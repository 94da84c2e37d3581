"""The demo's dashboard story on a real controller with a seeded fleet: it scrapes /metrics,
logs in to the dashboard and prints what it saw (every device, its figures, the URL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.config import ControllerConfig
from controller.demo import dashboard
from controller.demo.context import DemoRun
from tests.http_seed import seed_fleet


def test_dashboard_story_prints_what_it_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ControllerConfig(
        data_dir=tmp_path / "c", grpc_host="127.0.0.1", grpc_port=0, device_port=0,
        mqtt_port=0, http_port=0, shutdown_grace_s=1.0,
    )  # fmt: skip
    demo = DemoRun(root=tmp_path, config=config)
    controller = demo.start_controller()
    try:
        fleet = seed_fleet(controller, 3, reports_each=3, now_ms=int(time.time() * 1000))
        dashboard.story(demo)
    finally:
        demo.stop_controller()
    out = capsys.readouterr().out
    for name in fleet.names:
        assert f"{name}: fps " in out and "accuracy 0." in out
    assert "overview lists all 3 devices" in out and "a device page has 5 plots" in out
    assert f"open {controller.http_url}/" in out and "operator.token" in out
