"""A revoked device is no longer heard: whatever its broker session still carries after the
revocation (presence, telemetry) is dropped and counted, never stored or fed to rollout gates.

Real controller (its default broker), a real enrolled device identity and its MQTT client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from edgefleet import topics
from edgefleet.v1 import admin_pb2, report_pb2
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller


def _report(device_id: str, sequence: int) -> bytes:
    now = int(time.time() * 1000)
    report = report_pb2.TelemetryReport(
        device_id=device_id,
        sequence=sequence,
        frames=10,
        interval_start_unix_ms=now - 1000,
        interval_end_unix_ms=now,
    )
    return report.SerializeToString()


@pytest.mark.parametrize("broker", ["auto", "embedded"])
def test_revoked_device_telemetry_is_not_stored(tmp_path: Path, broker: str) -> None:
    controller = start_controller(tmp_path / "controller", mqtt=broker)
    admin = Admin(controller)
    device: AgentMqttClient | None = None
    try:
        identity = enroll(
            tmp_path / "cam", admin.address, admin.register("cam-1"), detect(), attempts=1
        )
        device_id = identity.device_id
        device = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url,
                device_id=device_id,
                username=identity.mqtt_username,
                password=identity.mqtt_password,
                heartbeat_interval_s=60,
            )
        )
        device.start()
        assert device.wait_connected(10)

        def frames() -> int:
            return int(controller.telemetry.cohort_metrics([device_id], 0, None).frames)

        assert device.publish_confirmed(topics.TELEMETRY, _report(device_id, 1), timeout=5)
        assert wait_until(lambda: frames() == 10, 10), "an enrolled device's report is stored"

        admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="cam-1"), timeout=10)
        # Whether or not the broker has dropped the session yet, nothing more is stored.
        still_connected = device.connected
        if still_connected:
            device.publish(topics.TELEMETRY, _report(device_id, 2))
        time.sleep(1.5)
        assert frames() == 10, "a revoked device's telemetry must not be stored"
        if still_connected and device.connected:
            assert controller.ingest.stats.dropped_not_admitted >= 1
        # Either broker the controller runs also ends the session and refuses it back.
        assert wait_until(lambda: not device.connected, 10), "revoked session still up"
        time.sleep(2.0)
        assert not device.connected, "a revoked device got back in"
    finally:
        if device is not None:
            device.stop()
        admin.close()
        controller.stop()
