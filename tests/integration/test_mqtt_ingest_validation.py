"""The ingest drops and counts whatever a peer sends that is not a valid message, and keeps going.

Runs against a private anonymous Mosquitto (no ACL), so the test can publish anything anywhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
from tests.conftest import free_port

TIMEOUT = 5.0

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None, reason="mosquitto binary not installed"
)


@pytest.fixture
def open_broker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, "mosquitto exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not open its port"
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


class FlakySink:
    """Raises on the first heartbeat (a sink bug), records the rest."""

    def __init__(self) -> None:
        self.heartbeats: list[tuple[str, int]] = []
        self.statuses: list[tuple[str, bool]] = []
        self.good = threading.Event()

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        self.statuses.append((device_id, online))

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None:
        if heartbeat.sequence == 1:
            raise RuntimeError("sink bug")
        self.heartbeats.append((device_id, heartbeat.sequence))
        if heartbeat.sequence == 2:
            self.good.set()


def test_malformed_payloads_are_counted_and_dropped(open_broker: str) -> None:
    sink = FlakySink()
    ingest = ControllerMqttIngest(IngestConfig(url=open_broker, connect_timeout_s=TIMEOUT), sink)
    ingest.start()
    peer = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="peer")
    try:
        assert ingest.wait_connected(TIMEOUT)
        host, port = open_broker.removeprefix("mqtt://").split(":")
        peer.connect(host, int(port), keepalive=10)
        peer.loop_start()
        hb = topics.device_topic("dev-1", topics.HEARTBEAT)
        status = topics.device_topic("dev-1", topics.STATUS)

        def send(topic: str, payload: bytes) -> None:
            peer.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)

        send(hb, b"\xff\xff\xff not a protobuf")
        send(status, b"\x08")  # truncated varint
        send(hb, telemetry_pb2.Heartbeat(device_id="dev-2", sequence=5).SerializeToString())
        send("edgefleet/v1/devices/bad id!/heartbeat", b"")
        send(
            "edgefleet/v1/devices/bad id!/status",
            telemetry_pb2.DeviceStatus(device_id="bad id!").SerializeToString(),
        )
        send(hb, telemetry_pb2.Heartbeat(device_id="dev-1", sequence=1).SerializeToString())
        send(hb, telemetry_pb2.Heartbeat(device_id="dev-1", sequence=2).SerializeToString())
        send(status, telemetry_pb2.DeviceStatus(device_id="dev-1", online=True).SerializeToString())

        assert sink.good.wait(TIMEOUT), "a valid heartbeat after the garbage never arrived"
        deadline = time.monotonic() + TIMEOUT
        while not sink.statuses and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = ingest.stats
        assert stats.dropped_malformed == 2
        assert stats.dropped_device_mismatch == 1
        assert stats.dropped_bad_topic == 2
        assert stats.sink_errors == 1
        assert stats.heartbeats_received == 2
        assert sink.heartbeats == [("dev-1", 2)]
        assert sink.statuses == [("dev-1", True)]
        assert ingest.connected
    finally:
        peer.disconnect()
        peer.loop_stop()
        ingest.stop()
