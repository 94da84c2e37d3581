"""Attack review: an enrolled device cannot pin itself "online" forever with a clock far ahead.

Presence (status, heartbeat) carries the device's own clock; the controller stored the latest
of them as last seen, so one heartbeat stamped in the year 146 million kept the device online
through every presence sweep, dead or not. Real controller (default broker), a real enrolled
identity and its MQTT client."""

from __future__ import annotations

import time
from pathlib import Path

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller

FAR_FUTURE_MS = 2**62


def test_presence_from_a_clock_far_ahead_is_not_stored_ahead(tmp_path: Path) -> None:
    controller = start_controller(tmp_path / "controller")
    admin = Admin(controller)
    device: AgentMqttClient | None = None
    try:
        identity = enroll(
            tmp_path / "cam", admin.address, admin.register("cam-1"), detect(), attempts=1
        )
        device = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url,
                device_id=identity.device_id,
                username=identity.mqtt_username,
                password=identity.mqtt_password,
                heartbeat_interval_s=600,
            )
        )
        device.start()
        assert device.wait_connected(10)
        before = controller.ingest.stats.heartbeats_received
        beat = telemetry_pb2.Heartbeat(device_id=identity.device_id, unix_ms=FAR_FUTURE_MS)
        assert device.publish_confirmed(topics.HEARTBEAT, beat.SerializeToString(), timeout=5)
        status = telemetry_pb2.DeviceStatus(
            device_id=identity.device_id, online=True, unix_ms=FAR_FUTURE_MS
        )
        assert device.publish_confirmed(topics.STATUS, status.SerializeToString(), timeout=5)
        assert wait_until(lambda: controller.ingest.stats.heartbeats_received > before, 10)
        time.sleep(0.5)  # the status after it
        seen = controller.registry.get("cam-1").last_seen_ms
        assert seen <= time.time() * 1000 + 1000, f"last seen stored in the future: {seen}"
    finally:
        if device is not None:
            device.stop()
        admin.close()
        controller.stop()
