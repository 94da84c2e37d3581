"""The embedded amqtt broker as a loopback-only fallback: what is closed there, through the real
broker, the real ingest and real device clients. (What stays open is in its module docstring.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.broker import EmbeddedBroker
from controller.mqtt.credentials import generate_password, hash_password
from controller.mqtt.errors import BrokerError
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from edgefleet import topics
from tests.conftest import wait_until
from tests.integration.test_mosquitto_supervised import Raw
from tests.integration.test_mqtt_brokers import RecordingSink

TIMEOUT = 5.0
CONTROLLER_PASSWORD = generate_password()


@dataclass
class Embedded:
    broker: EmbeddedBroker
    ingest: ControllerMqttIngest
    passwords: dict[str, str]
    hashes: dict[str, str]

    def agent(self, device_id: str) -> AgentMqttClient:
        client = AgentMqttClient(
            AgentMqttConfig(
                url=self.broker.url,
                device_id=device_id,
                username=device_id,
                password=self.passwords[device_id],
                connect_timeout_s=TIMEOUT,
                reconnect_max_delay_s=1,
                heartbeat_interval_s=60,
            )
        )
        client.start()
        assert client.wait_connected(TIMEOUT)
        return client


@pytest.fixture
def embedded() -> Iterator[Embedded]:
    passwords = {d: generate_password() for d in ("dev-a", "dev-b")}
    hashes = {CONTROLLER_USERNAME: hash_password(CONTROLLER_PASSWORD)} | {
        d: hash_password(p) for d, p in passwords.items()
    }
    broker = EmbeddedBroker(hashes.get, connect_timeout_s=1.0)
    broker.start(TIMEOUT)
    ingest = ControllerMqttIngest(
        IngestConfig(url=broker.ingest_url, password=CONTROLLER_PASSWORD), RecordingSink()
    )
    ingest.start()
    try:
        assert ingest.wait_connected(TIMEOUT)
        yield Embedded(broker, ingest, passwords, hashes)
    finally:
        ingest.stop()
        broker.stop(TIMEOUT)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "broker.example"])
def test_embedded_broker_refuses_a_non_loopback_bind(host: str) -> None:
    with pytest.raises(BrokerError, match="only listens on loopback"):
        EmbeddedBroker(lambda _user: None, host=host)


def test_connecting_device_gets_no_other_devices_retained_messages(embedded: Embedded) -> None:
    other = embedded.agent("dev-b")  # retained online status, and a desired subscription
    try:
        embedded.ingest.publish_desired("dev-b", b"secret-of-b", timeout=TIMEOUT)
        embedded.ingest.publish_desired("dev-a", b"for-a", timeout=TIMEOUT)
        probe = Raw(embedded.broker.port, "dev-a", "dev-a", embedded.passwords["dev-a"])
        own = topics.device_topic("dev-a", topics.DESIRED)
        probe.client.subscribe(own, 1)
        assert wait_until(lambda: (own, b"for-a") in probe.received, TIMEOUT)
        time.sleep(0.5)  # anything else retained would have arrived with it
        probe.close()
        assert {topic for topic, _ in probe.received} == {own}
    finally:
        other.stop(TIMEOUT)


def test_revoked_device_session_is_dropped(embedded: Embedded) -> None:
    revoked, kept = embedded.agent("dev-b"), embedded.agent("dev-a")
    try:
        del embedded.hashes["dev-b"]
        assert embedded.broker.credentials_changed(TIMEOUT) == ["dev-b"]
        assert wait_until(lambda: not revoked.connected, TIMEOUT)
        assert not revoked.wait_connected(2.0), "a revoked device got back in"
        assert kept.connected and embedded.ingest.connected
    finally:
        revoked.stop(1.0)
        kept.stop(TIMEOUT)


def test_socket_that_never_sends_connect_is_closed(embedded: Embedded) -> None:
    idle = socket.create_connection(("127.0.0.1", embedded.broker.port))
    idle.settimeout(TIMEOUT)
    opened = time.monotonic()
    try:
        assert idle.recv(1) == b""
        assert time.monotonic() - opened < 3.0
    finally:
        idle.close()
