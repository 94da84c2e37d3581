"""The controller keeps a real Mosquitto's password and ACL files in step with the registry."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.credentials import write_mosquitto_auth
from tests.conftest import free_port, wait_until
from tests.fleet import Admin, start_controller

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto is not installed",
)


def _start_mosquitto(auth_dir: Path, port: int) -> subprocess.Popen[bytes]:
    conf = auth_dir.parent / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {auth_dir / 'passwd'}",
        f"acl_file {auth_dir / 'acl'}",
        "persistence false",
        "log_dest stderr",
        "log_type error",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def test_enrolled_device_gets_in_and_revoked_device_does_not(tmp_path: Path) -> None:
    data_dir = tmp_path / "controller"
    data_dir.mkdir()
    (data_dir / "mqtt.secret").write_text("controller-secret")
    write_mosquitto_auth(data_dir / "mosquitto", "controller-secret", [])
    port = free_port()
    broker = _start_mosquitto(data_dir / "mosquitto", port)
    controller = start_controller(
        data_dir, mqtt=f"mqtt://127.0.0.1:{port}", mqtt_reload_command=f"kill -HUP {broker.pid}"
    )
    admin = Admin(controller)
    try:
        assert controller.ingest.wait_connected(10), "controller could not log in to mosquitto"
        identity = enroll(
            tmp_path / "cam", admin.address, admin.register("cam-1"), detect(), attempts=1
        )
        assert identity.mqtt_url == f"mqtt://127.0.0.1:{port}"
        passwd = (data_dir / "mosquitto" / "passwd").read_text()
        assert identity.device_id in passwd and identity.mqtt_password not in passwd
        assert oct(os.stat(data_dir / "mosquitto" / "passwd").st_mode & 0o777) == "0o600"

        def client() -> AgentMqttClient:
            return AgentMqttClient(
                AgentMqttConfig(
                    url=identity.mqtt_url,
                    device_id=identity.device_id,
                    username=identity.mqtt_username,
                    password=identity.mqtt_password,
                    heartbeat_interval_s=0.5,
                )
            )

        device = client()
        device.start()
        assert device.wait_connected(10)
        assert wait_until(lambda: admin.devices()[0].online, 10)
        device.stop()

        from edgefleet.v1 import admin_pb2

        admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="cam-1"), timeout=10)
        assert identity.device_id not in (data_dir / "mosquitto" / "passwd").read_text()
        again = client()
        again.start()
        assert not again.wait_connected(3), "a revoked device must not get into the broker"
        again.stop()
    finally:
        admin.close()
        controller.stop()
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)
