"""The ingest drops (and counts) messages of devices it does not admit and oversize payloads,
through a real supervised Mosquitto and real device clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.mqtt.credentials import generate_password, hash_password
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from controller.mqtt.mosquitto import MosquittoBroker
from controller.mqtt.mosquitto_conf import BrokerLimits, find_mosquitto
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
from tests.conftest import wait_until
from tests.integration.test_mosquitto_supervised import Raw
from tests.integration.test_mqtt_brokers import RecordingSink

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

TIMEOUT = 5.0
CONTROLLER_PASSWORD = generate_password()
PASSWORDS = {d: generate_password() for d in ("dev-a", "dev-b")}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    hashes = [(d, hash_password(p)) for d, p in PASSWORDS.items()]
    broker = MosquittoBroker(
        tmp_path / "m",
        host="127.0.0.1",
        port=0,
        controller_password=CONTROLLER_PASSWORD,
        credentials=lambda: hashes,
        limits=BrokerLimits(max_packet_bytes=1024 * 1024),  # the ingest's bound is the test
    )
    broker.start(TIMEOUT)
    try:
        yield broker
    finally:
        broker.stop(TIMEOUT)


def _heartbeat(device_id: str, sequence: int, padding: int = 0) -> bytes:
    beat = telemetry_pb2.Heartbeat(
        device_id=device_id, sequence=sequence, active_variant_id="x" * padding
    )
    return beat.SerializeToString()


def test_messages_of_a_device_not_admitted_are_counted_and_dropped(
    broker: MosquittoBroker,
) -> None:
    admitted = {"dev-a"}
    sink = RecordingSink()
    ingest = ControllerMqttIngest(
        IngestConfig(url=broker.ingest_url, password=CONTROLLER_PASSWORD),
        sink,
        admit=admitted.__contains__,
    )
    ingest.start()
    devices = {d: Raw(broker.port, d, d, p) for d, p in PASSWORDS.items()}
    try:
        assert ingest.wait_connected(TIMEOUT)
        for sequence in range(3):
            for device_id, client in devices.items():
                topic = topics.device_topic(device_id, topics.HEARTBEAT)
                client.client.publish(topic, _heartbeat(device_id, sequence), qos=1)
        assert wait_until(lambda: ingest.stats.dropped_not_admitted == 3, TIMEOUT)
        assert wait_until(lambda: len(sink.heartbeats) == 3, TIMEOUT)
        assert {d for d, _ in sink.heartbeats} == {"dev-a"}
        admitted.add("dev-b")  # admission is asked per message: enrolment takes effect at once
        topic = topics.device_topic("dev-b", topics.HEARTBEAT)
        devices["dev-b"].client.publish(topic, _heartbeat("dev-b", 9), qos=1)
        assert wait_until(lambda: ("dev-b", 9) in [(d, h.sequence) for d, h in sink.heartbeats], 5)
    finally:
        for client in devices.values():
            client.close()
        ingest.stop()


def test_payload_over_the_ingest_limit_is_counted_and_dropped(broker: MosquittoBroker) -> None:
    sink = RecordingSink()
    ingest = ControllerMqttIngest(
        IngestConfig(url=broker.ingest_url, password=CONTROLLER_PASSWORD, max_payload_bytes=4096),
        sink,
    )
    ingest.start()
    device = Raw(broker.port, "dev-a", "dev-a", PASSWORDS["dev-a"])
    try:
        assert ingest.wait_connected(TIMEOUT)
        topic = topics.device_topic("dev-a", topics.HEARTBEAT)
        device.client.publish(topic, _heartbeat("dev-a", 1, padding=100_000), qos=1)
        device.client.publish(topic, _heartbeat("dev-a", 2), qos=1)
        assert wait_until(lambda: len(sink.heartbeats) == 1, TIMEOUT)
        assert sink.heartbeats[0][1].sequence == 2
        assert ingest.stats.dropped_oversize == 1 and ingest.stats.dropped_malformed == 0
    finally:
        device.close()
        ingest.stop()
