"""Attack review: one device flooding presence messages does not delay or lose another
device's telemetry.

Every status and heartbeat was one database write on the ingest's one thread (about 1,100 a
second here); a device publishing 100,000 QoS 0 heartbeats in 8 s kept the ingest busy for a
minute and left another device with 21 of its 50 reports stored after 30 s. Presence beyond a
per-device budget is now dropped unread (counted). Real controller, its default broker, two
enrolled identities with their own MQTT credentials."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from edgefleet import topics
from edgefleet.v1 import report_pb2, telemetry_pb2
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller

FLOOD = 60_000
REPORTS = 20


def _connected(identity: Identity) -> mqtt.Client:
    host, port = identity.mqtt_url.split("://", 1)[1].rsplit(":", 1)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity.device_id)
    client.username_pw_set(identity.mqtt_username, identity.mqtt_password)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    client.connect(host, int(port), 30)
    client.loop_start()
    assert wait_until(client.is_connected, 10)
    return client


@pytest.mark.timeout(90)
def test_a_presence_flood_leaves_other_devices_telemetry_stored(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    clients: list[mqtt.Client] = []
    try:
        flooder, honest = (
            enroll(tmp_path / name, admin.address, admin.register(name), detect(), attempts=1)
            for name in ("flooder", "honest")
        )
        flood_client, honest_client = _connected(flooder), _connected(honest)
        clients += [flood_client, honest_client]
        now = int(time.time() * 1000)
        beat = telemetry_pb2.Heartbeat(device_id=flooder.device_id, unix_ms=now)
        beat_topic = topics.device_topic(flooder.device_id, topics.HEARTBEAT)
        report_topic = topics.device_topic(honest.device_id, topics.TELEMETRY)
        for i in range(FLOOD):
            flood_client.publish(beat_topic, beat.SerializeToString(), qos=0)
            if i % (FLOOD // REPORTS) == 0:
                report = report_pb2.TelemetryReport(
                    device_id=honest.device_id,
                    sequence=i + 1,
                    frames=10,
                    interval_start_unix_ms=now - 1000,
                    interval_end_unix_ms=now,
                )
                honest_client.publish(report_topic, report.SerializeToString(), qos=1)

        def frames() -> int:
            return int(ctl.telemetry.cohort_metrics([honest.device_id], 0, None).frames)

        assert wait_until(lambda: frames() == 10 * REPORTS, 15), (
            f"{frames() // 10} of {REPORTS} reports stored; ingest {ctl.ingest.stats}"
        )
        assert ctl.ingest.stats.dropped_rate_limited > 0
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        admin.close()
        ctl.stop()


@pytest.mark.timeout(90)
def test_a_telemetry_flood_stores_at_most_the_devices_budget(tmp_path: Path) -> None:
    """5,000 valid reports published at once: a full spool's worth (1,000) and about one a
    second are stored, the rest dropped and counted. Before, every one became a database row
    (a device could add some 10,000 rows a second)."""
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    client = None
    try:
        flooder = enroll(
            tmp_path / "flooder", admin.address, admin.register("flooder"), detect(), attempts=1
        )
        client = _connected(flooder)
        now = int(time.time() * 1000)
        topic = topics.device_topic(flooder.device_id, topics.TELEMETRY)
        started = time.monotonic()
        for i in range(5000):
            report = report_pb2.TelemetryReport(
                device_id=flooder.device_id,
                sequence=i + 1,
                frames=1,
                interval_start_unix_ms=now - 1000,
                interval_end_unix_ms=now,
            )
            client.publish(topic, report.SerializeToString(), qos=0)
        stats = ctl.ingest.stats
        assert wait_until(lambda: stats.telemetry_received + stats.dropped_rate_limited >= 5000, 30)
        budget = 1000 + (time.monotonic() - started) + 1

        def frames() -> int:
            return int(ctl.telemetry.cohort_metrics([flooder.device_id], 0, None).frames)

        assert wait_until(lambda: frames() == stats.telemetry_received, 10)
        assert 1000 <= frames() <= budget, (frames(), budget)
        assert stats.dropped_rate_limited >= 5000 - budget
    finally:
        if client is not None:
            client.loop_stop()
            client.disconnect()
        admin.close()
        ctl.stop()
