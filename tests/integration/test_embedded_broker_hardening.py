"""The embedded amqtt broker as a loopback-only fallback: what is closed there, through the real
broker, the real ingest and real device clients. (What stays open is in its module docstring.)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.broker import EmbeddedBroker
from controller.mqtt.credentials import generate_password, hash_password
from controller.mqtt.errors import BrokerError
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
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


@pytest.mark.parametrize("clean_session", [True, False])
def test_unauthenticated_connect_with_a_live_clients_id_does_not_disturb_it(
    embedded: Embedded, clean_session: bool
) -> None:
    got: list[bytes] = []
    device = embedded.agent("dev-a")
    device.on_desired(got.append)
    try:
        for client_id in ("edgefleet-controller-ingest", "dev-a"):
            for username, password in ((None, ""), (client_id, "wrong"), ("dev-b", "wrong")):
                attacker = mqtt.Client(
                    callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                    client_id=client_id,
                    protocol=mqtt.MQTTv311,
                    clean_session=clean_session,
                )
                if username is not None:
                    attacker.username_pw_set(username, password)
                refused = threading.Event()
                attacker.on_connect = _set_when_refused(refused)
                attacker.connect("127.0.0.1", embedded.broker.port, keepalive=10)
                attacker.loop_start()
                assert refused.wait(TIMEOUT)
                attacker.disconnect()
                attacker.loop_stop()
        time.sleep(0.3)
        assert embedded.ingest.stats.disconnects == 0 and embedded.ingest.connected
        assert device.connected
        embedded.ingest.publish_desired("dev-a", b"after-attack", timeout=TIMEOUT)
        assert wait_until(lambda: got[-1:] == [b"after-attack"], TIMEOUT), "dev-a lost its desired"
        beats = embedded.ingest.stats.heartbeats_received
        device.publish_heartbeat()
        assert wait_until(lambda: embedded.ingest.stats.heartbeats_received > beats, TIMEOUT)
    finally:
        device.stop(TIMEOUT)


def _set_when_refused(event: threading.Event) -> Callable[..., None]:
    def on_connect(_c: Any, _u: Any, _f: Any, reason: mqtt.ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            event.set()

    return on_connect


def test_publish_over_max_packet_size_disconnects_the_publisher(embedded: Embedded) -> None:
    sender = Raw(embedded.broker.port, "dev-a", "dev-a", embedded.passwords["dev-a"])
    topic = topics.device_topic("dev-a", topics.HEARTBEAT)
    try:
        big = telemetry_pb2.Heartbeat(device_id="dev-a", active_variant_id="x" * 300_000)
        sender.client.publish(topic, big.SerializeToString(), qos=1)
        assert sender.disconnected.wait(TIMEOUT), "oversize publisher still connected"
    finally:
        sender.close()
    again = Raw(embedded.broker.port, "dev-a", "dev-a", embedded.passwords["dev-a"])
    try:
        small = telemetry_pb2.Heartbeat(device_id="dev-a", sequence=3).SerializeToString()
        again.client.publish(topic, small, qos=1).wait_for_publish(TIMEOUT)
        assert wait_until(lambda: embedded.ingest.stats.heartbeats_received == 1, TIMEOUT)
        assert embedded.ingest.stats.dropped_oversize == 0  # the big one never got through
    finally:
        again.close()
