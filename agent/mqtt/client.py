"""The agent's MQTT connection: presence (status + last will), heartbeats, desired state.

Threads: paho's network loop runs in its own thread (``loop_start``); a heartbeat thread
publishes every ``heartbeat_interval_s``. Callbacks given to :meth:`AgentMqttClient.on_desired`
run on paho's thread and must return quickly.

Presence: the broker holds a retained ``DeviceStatus`` on ``.../status``. On every (re)connect
the agent publishes ``online=true``; the last will (``online=false``, ``unix_ms=0`` because the
broker, not the agent, publishes it) covers a dead socket; :meth:`AgentMqttClient.stop`
publishes ``online=false`` itself before a clean disconnect (which suppresses the will).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from agent.errors import AgentError
from edgefleet import mqtt as edgefleet_mqtt
from edgefleet import topics
from edgefleet.errors import InvalidInput
from edgefleet.v1 import telemetry_pb2

log = logging.getLogger(__name__)

DesiredCallback = Callable[[bytes], None]


class MqttError(AgentError):
    """The MQTT connection could not be set up or a message could not be queued."""


@dataclass(frozen=True)
class AgentMqttConfig:
    url: str  # mqtt://host:1883 or mqtts://host:8883
    device_id: str
    username: str
    password: str
    ca_file: str | None = None  # mqtts: CA that signed the broker certificate (None: system CAs)
    cert_file: str | None = None  # optional client certificate (mutual TLS)
    key_file: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    heartbeat_interval_s: float = 30.0
    max_queued_messages: int = 1000  # paho's outgoing queue bound while disconnected
    reconnect_min_delay_s: int = 1
    reconnect_max_delay_s: int = 60
    agent_version: str = ""

    def __repr__(self) -> str:  # never show the password
        return f"AgentMqttConfig(url={self.url!r}, device_id={self.device_id!r})"


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> (host, port, tls)."""
    try:
        address = edgefleet_mqtt.parse_broker_url(url)
    except InvalidInput as exc:
        raise MqttError(str(exc)) from exc
    return address.host, address.port, address.tls


class AgentMqttClient:
    def __init__(self, config: AgentMqttConfig) -> None:
        topics.check_device_id(config.device_id)
        self._config = config
        self._host, self._port, tls = parse_broker_url(config.url)
        self._status_topic = topics.device_topic(config.device_id, topics.STATUS)
        self._desired_topic = topics.device_topic(config.device_id, topics.DESIRED)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._desired_callbacks: list[DesiredCallback] = []
        self._sequence = 0
        self._active_variant_id = ""
        self._started_monotonic = time.monotonic()
        self._heartbeat_thread: threading.Thread | None = None
        self.heartbeats_skipped = 0  # intervals that passed while disconnected

        client = edgefleet_mqtt.new_client(
            config.device_id,
            config.username,
            config.password,
            tls=tls,
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
        )
        client.will_set(self._status_topic, self._status_payload(False, unix_ms=0), 1, True)
        client.reconnect_delay_set(config.reconnect_min_delay_s, config.reconnect_max_delay_s)
        client.max_queued_messages_set(config.max_queued_messages)
        client.connect_timeout = config.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start heartbeats."""
        log.info("mqtt connecting device=%s broker=%s", self._config.device_id, self._config.url)
        try:
            self._client.connect_async(self._host, self._port, self._config.keepalive_s)
        except (OSError, ValueError) as e:
            raise MqttError(f"cannot start mqtt connection to {self._config.url}: {e}") from e
        self._client.loop_start()
        name = f"mqtt-heartbeat-{self._config.device_id}"
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=name, daemon=True
        )
        self._heartbeat_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``online=false`` (retained), disconnect cleanly, stop the threads."""
        self._stopping.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout)
        if self._connected.is_set():
            info = self._client.publish(
                self._status_topic, self._status_payload(False), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                log.warning("mqtt offline status not sent device=%s: %s", self._config.device_id, e)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or until ``timeout`` seconds pass (False)."""
        return self._connected.wait(timeout)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, kind: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue ``payload`` on this device's ``kind`` topic (status, heartbeat, telemetry).

        Raises MqttError when paho's bounded queue is full. While disconnected, QoS>0 messages
        wait in that queue and go out after reconnecting.
        """
        if kind not in topics.DEVICE_PUBLISHED:
            raise MqttError(f"a device may not publish {kind!r}")
        info = self._client.publish(
            topics.device_topic(self._config.device_id, kind), payload, qos=qos, retain=retain
        )
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise MqttError(f"mqtt outgoing queue full ({self._config.max_queued_messages})")
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise MqttError(f"mqtt publish failed: {mqtt.error_string(info.rc)}")

    def publish_confirmed(self, kind: str, payload: bytes, timeout: float) -> bool:
        """Publish at QoS 1 and wait for the broker's acknowledgement: True once acknowledged,
        False when disconnected, the queue is full or no ack came within ``timeout``."""
        if kind not in topics.DEVICE_PUBLISHED:
            raise MqttError(f"a device may not publish {kind!r}")
        if not self._connected.is_set():
            return False
        info = self._client.publish(
            topics.device_topic(self._config.device_id, kind), payload, qos=1
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def publish_heartbeat(self, active_variant_id: str | None = None) -> int:
        """Publish one Heartbeat (QoS 1) and return its sequence number."""
        with self._lock:
            if active_variant_id is not None:
                self._active_variant_id = active_variant_id
            self._sequence += 1
            beat = telemetry_pb2.Heartbeat(
                device_id=self._config.device_id,
                unix_ms=_now_ms(),
                uptime_seconds=int(time.monotonic() - self._started_monotonic),
                active_variant_id=self._active_variant_id,
                sequence=self._sequence,
            )
        self.publish(topics.HEARTBEAT, beat.SerializeToString(), qos=1)
        return beat.sequence

    def set_active_variant(self, variant_id: str) -> None:
        """The variant id the next heartbeats report."""
        with self._lock:
            self._active_variant_id = variant_id

    def on_desired(self, callback: DesiredCallback) -> None:
        """Call ``callback(payload)`` on paho's thread for every message on ``.../desired``."""
        with self._lock:
            self._desired_callbacks.append(callback)
        if self._connected.is_set():
            self._client.subscribe(self._desired_topic, qos=1)

    # -- paho callbacks (paho's thread) -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt connect refused device=%s: %s", self._config.device_id, reason)
            return
        log.info("mqtt connected device=%s", self._config.device_id)
        client.publish(self._status_topic, self._status_payload(True), qos=1, retain=True)
        with self._lock:
            want_desired = bool(self._desired_callbacks)
        if want_desired:
            client.subscribe(self._desired_topic, qos=1)
        self._connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected device=%s: %s", self._config.device_id, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self._desired_topic:
            return
        with self._lock:
            callbacks = list(self._desired_callbacks)
        for callback in callbacks:
            try:
                callback(bytes(msg.payload))
            except Exception:  # a bad callback must not kill paho's network thread
                log.exception("desired-state callback failed device=%s", self._config.device_id)

    # -- internals ---------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self._config.heartbeat_interval_s):
            if not self._connected.is_set():
                self.heartbeats_skipped += 1  # a stale heartbeat is worthless: do not queue it
                continue
            try:
                self.publish_heartbeat()
            except MqttError as e:
                log.warning("heartbeat not sent device=%s: %s", self._config.device_id, e)

    def _status_payload(self, online: bool, unix_ms: int | None = None) -> bytes:
        return telemetry_pb2.DeviceStatus(
            device_id=self._config.device_id,
            online=online,
            unix_ms=_now_ms() if unix_ms is None else unix_ms,
            agent_version=self._config.agent_version,
        ).SerializeToString()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
