"""`fleet status` p50/p95 for a 0.03 ms model come out within a factor of 1.5 of the truth,
on the real path: the agent's TelemetryAggregator -> TelemetryReport over MQTT -> the
controller's decode, store and query -> FleetAdminService -> `edgefleet fleet status`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from agent.telemetry import TelemetryAggregator
from tests.fleet import Admin, edgefleet_cli, start_controller


@pytest.mark.timeout(120)
def test_fleet_status_resolves_a_30_microsecond_model(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    mqtt = None
    try:
        identity = enroll(tmp_path / "cam", f"127.0.0.1:{ctl.grpc_port}",
                          admin.register("cam", "auto"), detect())  # fmt: skip
        mqtt = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url, device_id=identity.device_id,
                username=identity.mqtt_username, password=identity.mqtt_password,
            )
        )  # fmt: skip
        mqtt.start()
        rng = np.random.default_rng(7)
        values = 0.03 * rng.lognormal(0.0, 0.2, 3000)  # a 0.03 ms model, as measured
        agg = TelemetryAggregator(identity.device_id, "tiny", "tiny:1:onnx-fp32")
        for chunk in np.array_split(values, 3):
            for v in chunk:
                agg.record_frame(float(v), float(v), 0.9)
            mqtt.publish("telemetry", agg.report().SerializeToString())

        def device() -> dict[str, object]:
            out = edgefleet_cli(ctl.config.data_dir, "fleet", "status", "--format", "json")
            return dict(json.loads(out.stdout)["devices"][0])

        deadline = time.monotonic() + 30
        shown = device()
        while shown["frames"] != len(values) and time.monotonic() < deadline:
            time.sleep(0.3)
            shown = device()
        assert shown["frames"] == len(values), shown
        for key, q in (("p50_latency_ms", 0.5), ("p95_latency_ms", 0.95)):
            truth = float(np.quantile(values, q))
            got = shown[key]
            assert isinstance(got, float) and truth / 1.5 <= got <= truth * 1.5, (key, truth, got)
    finally:
        if mqtt is not None:
            mqtt.stop()
        admin.close()
        ctl.stop()
