"""The controller's default broker is the Mosquitto it supervises: a real controller
(build_controller), a real enrolled agent, revocation through the operator API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.mosquitto import MosquittoBroker
from controller.mqtt.mosquitto_conf import find_mosquitto
from edgefleet.v1 import admin_pb2
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]


def test_default_controller_runs_mosquitto_and_revocation_cuts_the_open_session(
    tmp_path: Path,
) -> None:
    controller = start_controller(tmp_path / "ctl")
    admin = Admin(controller)
    device: AgentMqttClient | None = None
    try:
        broker = controller.broker.auth
        assert controller.broker.kind == "mosquitto" and isinstance(broker, MosquittoBroker)
        pid = broker.pid
        assert controller.ingest.wait_connected(10)
        identity = enroll(
            tmp_path / "cam", admin.address, admin.register("cam-1"), detect(), attempts=1
        )
        assert identity.mqtt_url == f"mqtt://127.0.0.1:{broker.port}"
        device = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url,
                device_id=identity.device_id,
                username=identity.mqtt_username,
                password=identity.mqtt_password,
                heartbeat_interval_s=0.5,
                reconnect_max_delay_s=1,
            )
        )
        device.start()
        assert device.wait_connected(10), "enrolled device not let in (passwd not reloaded?)"
        assert wait_until(lambda: admin.devices()[0].online, 10)

        revoked_at = time.monotonic()
        admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="cam-1"), timeout=10)
        assert wait_until(lambda: not device.connected, 5), "revoked device's session stayed up"
        assert time.monotonic() - revoked_at < 5
        assert not device.wait_connected(2.5), "revoked device got back in"
    finally:
        if device is not None:
            device.stop(1.0)
        admin.close()
        controller.stop()
    assert pid is not None and not Path(f"/proc/{pid}").exists(), "mosquitto outlived stop()"
