"""Controller-side MQTT ingest: device status, heartbeats and telemetry in, desired state out.

Every payload is validated (topic shape, size, the device admitted now, protobuf decoding,
device id in the payload equal to the one in the topic) before the sink sees it; anything else
is counted in :class:`IngestStats`, logged at a bounded rate, and dropped. Nothing a device
sends can stop the ingest.

Replicas: each replica's ingest has its own client id (``edgefleet-ingest-<replica id>``); with
``shared_group`` it subscribes ``$share/<group>/<filter>``, so the broker hands each message to
one replica of the group. With ``ack_after_store`` a telemetry message is acknowledged (PUBACK,
paho's manual ack) only after the sink says it is stored; a write that failed leaves it
unacknowledged, and :meth:`ControllerMqttIngest.redeliver` reconnects (persistent session) so
the broker sends it again. A replica killed mid-batch leaves its unacknowledged messages in its
broker session, delivered when a replica with the same id connects again.

Threading: sink methods are called on paho's network thread, one message at a time. They must
be quick (hand the value to a bounded queue or do one small DB write); a slow sink delays all
other messages and, past the keepalive, the connection itself. Sink exceptions are counted and
logged, never propagated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from google.protobuf.message import DecodeError

from controller.errors import ControllerError
from controller.mqtt.acl import CONTROLLER_USERNAME
from edgefleet import mqtt as edgefleet_mqtt
from edgefleet import topics
from edgefleet.errors import InvalidInput, Unavailable
from edgefleet.v1 import report_pb2, telemetry_pb2

log = logging.getLogger(__name__)


class MqttIngestError(ControllerError):
    """The ingest's broker connection could not be set up or a message could not be queued."""


class TelemetrySink(Protocol):
    """Where validated device messages go. Called on paho's thread: return quickly."""

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        """``unix_ms`` is the device's clock, or the receive time for a last will (sent as 0)."""

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None: ...

    # Optional: sinks that also take telemetry define
    #   device_telemetry(device_id: str, sample: ReportSample) -> None
    # (controller.services.telemetry_math.ReportSample); without it reports are not subscribed.
    # With IngestConfig.ack_after_store it is called with a third argument, ``on_stored``, a
    # callable to run once the report is committed (it acknowledges the MQTT message).


@dataclass(frozen=True)
class IngestConfig:
    url: str  # mqtt://host:1883 or mqtts://host:8883
    username: str = CONTROLLER_USERNAME
    password: str = ""
    # The broker queues reports for the ingest while it reconnects (after a broker restart
    # too, when the broker persists sessions, as Mosquitto does with `persistence true`).
    persistent_session: bool = True
    client_id: str = "edgefleet-controller-ingest"
    # "": plain subscriptions; else $share/<shared_group>/<filter> (replicas share the load)
    shared_group: str = ""
    # acknowledge telemetry only once the sink stored it (on_stored); presence at once
    ack_after_store: bool = False
    # after a failed store: reconnect to have unacknowledged reports redelivered, no sooner
    redeliver_min_interval_s: float = 2.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    max_queued_messages: int = 10_000
    reconnect_min_delay_s: int = 1
    reconnect_max_delay_s: int = 30
    max_payload_bytes: int = 256 * 1024  # larger messages are dropped unread
    # Presence (status, heartbeat) per device: a burst, then this many a second (agents send
    # one heartbeat every 5 s); beyond it dropped unread, so a flood costs no database write.
    presence_burst: int = 20
    presence_per_s: float = 5.0
    # Telemetry per device: a full spool replayed after an outage (the agent spools at most
    # 1,000 reports), then one a second (agents report every 10 s): a flooding device can
    # store only so many rows, however fast it publishes.
    telemetry_burst: int = 1000
    telemetry_per_s: float = 1.0

    def __repr__(self) -> str:  # never show the password
        return f"IngestConfig(url={self.url!r}, username={self.username!r})"


@dataclass
class IngestStats:
    status_received: int = 0
    heartbeats_received: int = 0
    dropped_malformed: int = 0  # payload is not the expected protobuf
    dropped_bad_topic: int = 0  # topic is not edgefleet/v1/devices/{valid id}/{kind}
    dropped_device_mismatch: int = 0  # payload device_id differs from the topic's
    sink_errors: int = 0
    telemetry_received: int = 0
    dropped_invalid_report: int = 0  # decodes, but is inconsistent (histograms, counts, times)
    dropped_not_admitted: int = 0  # the device may not report now (unknown, revoked)
    dropped_oversize: int = 0  # payload larger than IngestConfig.max_payload_bytes
    dropped_rate_limited: int = 0  # presence or telemetry beyond the device's budget
    disconnects: int = 0  # connections to the broker lost (not counting stop())


DeviceAdmission = Callable[[str], bool]  # device id -> may it report now? Called on paho's thread


def admit_every_device(_device_id: str) -> bool:
    return True


class _BoundedLog:
    """At most one warning per ``interval_s`` per kind of drop, with how many were not logged."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._next[kind] = now + self._interval_s
        if suppressed := self._suppressed.pop(kind, 0):
            message += f" (and {suppressed} more not logged)"
        log.warning(message, *args)


class _DeviceBudget:
    """A token bucket per device (paho's thread only): ``burst`` messages, refilled at
    ``per_s``. Keys are admitted devices only, so the table is as large as the fleet."""

    def __init__(self, burst: int, per_s: float) -> None:
        self._burst, self._per_s = float(burst), per_s
        self._buckets: dict[str, tuple[float, float]] = {}  # device -> (tokens, at)

    def take(self, device_id: str) -> bool:
        now = time.monotonic()
        tokens, at = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._per_s)
        if tokens < 1.0:
            self._buckets[device_id] = (tokens, now)
            return False
        self._buckets[device_id] = (tokens - 1.0, now)
        return True


_STATUS = topics.subscription(topics.STATUS)
_HEARTBEAT = topics.subscription(topics.HEARTBEAT)
_TELEMETRY = topics.subscription(topics.TELEMETRY)


class ControllerMqttIngest:
    """``admit(device_id)`` says whether a device may report now (e.g. enrolled, not revoked);
    messages of a device it refuses are counted and dropped. It runs on paho's thread for
    every message: keep it a quick lookup."""

    def __init__(
        self,
        config: IngestConfig,
        sink: TelemetrySink,
        *,
        admit: DeviceAdmission = admit_every_device,
    ) -> None:
        self._config = config
        self._sink = sink
        self._admit = admit
        self._drop_log = _BoundedLog()
        self._presence = _DeviceBudget(config.presence_burst, config.presence_per_s)
        self._reports = _DeviceBudget(config.telemetry_burst, config.telemetry_per_s)
        self.stats = IngestStats()
        self._connected = threading.Event()
        self._stopping = False
        try:
            address = edgefleet_mqtt.parse_broker_url(config.url)
        except InvalidInput as exc:
            raise MqttIngestError(str(exc)) from exc
        self._host, self._port = address.host, address.port
        client = edgefleet_mqtt.new_client(
            config.client_id,
            config.username,
            config.password,
            tls=address.tls,
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            persistent_session=config.persistent_session,
        )
        if config.ack_after_store:
            client.manual_ack_set(True)
        client.reconnect_delay_set(config.reconnect_min_delay_s, config.reconnect_max_delay_s)
        client.max_queued_messages_set(config.max_queued_messages)
        client.connect_timeout = config.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.message_callback_add(_STATUS, self._on_status)
        client.message_callback_add(_HEARTBEAT, self._on_heartbeat)
        self._telemetry_sink = getattr(sink, "device_telemetry", None)
        if self._telemetry_sink is not None:
            client.message_callback_add(_TELEMETRY, self._on_telemetry)
        self._client = client
        self._redeliver_lock = threading.Lock()
        self._last_redeliver = 0.0
        self._redeliver_pending = False
        self.redeliveries = 0  # reconnects asked for by failed stores

    def start(self) -> None:
        """Connect in the background; (re)subscribes on every connect."""
        log.info("mqtt ingest connecting to %s as %s", self._config.url, self._config.username)
        try:
            self._client.connect_async(self._host, self._port, self._config.keepalive_s)
        except (OSError, ValueError) as e:
            raise MqttIngestError(f"cannot start mqtt connection to {self._config.url}") from e
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and stop paho's thread (``timeout`` bounds nothing paho lets us bound)."""
        del timeout
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def redeliver(self, _failed: int = 0) -> None:
        """A store failed: reconnect (on a thread of its own, at most once per
        ``redeliver_min_interval_s``: a later failure within it is served by one reconnect at
        its end) so the broker sends the unacknowledged reports again."""
        if not self._config.ack_after_store or self._stopping:
            return
        with self._redeliver_lock:
            if self._redeliver_pending:
                return
            self._redeliver_pending = True
            delay = self._last_redeliver + self._config.redeliver_min_interval_s - time.monotonic()
        timer = threading.Timer(max(0.0, delay), self._reconnect)
        timer.name, timer.daemon = "mqtt-ingest-redeliver", True
        timer.start()

    def _reconnect(self) -> None:
        with self._redeliver_lock:
            self._redeliver_pending = False
            self._last_redeliver = time.monotonic()
            self.redeliveries += 1
        log.warning("mqtt ingest reconnecting: reports not stored are to be redelivered")
        try:
            self._client.disconnect()
            self._client.loop_stop()
            if self._stopping:
                return
            self._client.connect_async(self._host, self._port, self._config.keepalive_s)
            self._client.loop_start()
        except (OSError, ValueError, RuntimeError) as exc:
            log.error("mqtt ingest could not reconnect for redelivery: %s", exc)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed; False after ``timeout`` seconds."""
        return self._connected.wait(timeout)

    def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None) -> None:
        """Publish retained, QoS 1 desired state for one device.

        With ``timeout``, wait until the broker acknowledged it, raising ``Unavailable`` if it
        did not in time; without, just queue it (bounded; MqttIngestError when full).
        """
        topic = topics.device_topic(device_id, topics.DESIRED)
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise MqttIngestError(f"mqtt outgoing queue full ({self._config.max_queued_messages})")
        if timeout is not None:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                raise Unavailable(f"desired state for {device_id} not published: {e}") from e
            if not info.is_published():
                raise Unavailable(f"broker did not acknowledge desired state for {device_id}")

    # -- paho callbacks (paho's thread) -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt ingest connect refused: %s", reason)
            return
        filters = [_STATUS, _HEARTBEAT]
        if self._telemetry_sink is not None:
            filters.append(_TELEMETRY)
        if group := self._config.shared_group:
            filters = [f"$share/{group}/{f}" for f in filters]
        client.subscribe([(f, 1) for f in filters])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("mqtt ingest subscription refused: %s", reasons)
            return
        log.info("mqtt ingest connected and subscribed")
        self._connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping:
            self.stats.disconnects += 1
            log.warning("mqtt ingest disconnected: %s (reconnecting)", reason)

    def _on_status(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._status(msg)
        finally:
            self._ack(msg)

    def _status(self, msg: mqtt.MQTTMessage) -> None:
        device_id = self._device_of(msg)
        if device_id is None or not self._within_budget(self._presence, device_id, "presence"):
            return
        status = telemetry_pb2.DeviceStatus()
        if not self._decode(status, msg, device_id):
            return
        self.stats.status_received += 1
        unix_ms = status.unix_ms or time.time_ns() // 1_000_000
        self._call_sink(
            self._sink.device_status, device_id, status.online, unix_ms, status.agent_version
        )

    def _on_heartbeat(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._heartbeat(msg)
        finally:
            self._ack(msg)

    def _heartbeat(self, msg: mqtt.MQTTMessage) -> None:
        device_id = self._device_of(msg)
        if device_id is None or not self._within_budget(self._presence, device_id, "presence"):
            return
        beat = telemetry_pb2.Heartbeat()
        if not self._decode(beat, msg, device_id):
            return
        self.stats.heartbeats_received += 1
        self._call_sink(self._sink.device_heartbeat, device_id, beat)

    def _on_telemetry(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        handed_over = False
        try:
            handed_over = self._telemetry(msg)
        finally:
            if not handed_over:  # dropped (or the sink failed at once): acknowledged now
                self._ack(msg)

    def _telemetry(self, msg: mqtt.MQTTMessage) -> bool:
        """True when the sink took the report and will acknowledge it (ack_after_store)."""
        from controller.mqtt.telemetry_decode import sample_from_report

        device_id = self._device_of(msg)
        if device_id is None or not self._within_budget(self._reports, device_id, "telemetry"):
            return False
        report = report_pb2.TelemetryReport()
        if not self._decode(report, msg, device_id):
            return False
        try:
            sample = sample_from_report(report, device_id, time.time_ns() // 1_000_000)
        except InvalidInput as exc:
            self.stats.dropped_invalid_report += 1
            self._drop_log.warning(
                "invalid", "mqtt ingest dropped invalid telemetry of device=%s: %s", device_id, exc
            )
            return False
        self.stats.telemetry_received += 1
        if not self._config.ack_after_store:
            self._call_sink(self._telemetry_sink, device_id, sample)
            return False
        mid, qos = msg.mid, msg.qos
        return self._call_sink(
            self._telemetry_sink, device_id, sample, lambda: self._ack_mid(mid, qos)
        )

    def _ack(self, msg: mqtt.MQTTMessage) -> None:
        if self._config.ack_after_store:
            self._ack_mid(msg.mid, msg.qos)

    def _ack_mid(self, mid: int, qos: int) -> None:
        if qos > 0:
            self._client.ack(mid, qos)

    # -- validation -----------------------------------------------------------------------------

    def _device_of(self, msg: mqtt.MQTTMessage) -> str | None:
        """The sending device, when the topic is valid, the payload small enough and the
        device admitted; None (counted, logged) otherwise."""
        try:
            device_id, _kind = topics.parse_device_topic(msg.topic)
        except InvalidInput:
            self.stats.dropped_bad_topic += 1
            self._drop_log.warning(
                "topic", "mqtt ingest dropped message on unparseable topic %r", msg.topic[:200]
            )
            return None
        if len(msg.payload) > self._config.max_payload_bytes:
            self.stats.dropped_oversize += 1
            self._drop_log.warning(
                "oversize",
                "mqtt ingest dropped %d-byte message of device=%s (limit %d)",
                len(msg.payload),
                device_id,
                self._config.max_payload_bytes,
            )
            return None
        try:
            admitted = self._admit(device_id)
        except Exception:  # a failing lookup refuses the message, it does not kill paho's thread
            log.exception("mqtt ingest admission check failed device=%s", device_id)
            admitted = False
        if not admitted:
            self.stats.dropped_not_admitted += 1
            self._drop_log.warning(
                "admit", "mqtt ingest dropped message of device=%s: not admitted", device_id
            )
            return None
        return device_id

    def _within_budget(self, budget: _DeviceBudget, device_id: str, what: str) -> bool:
        if budget.take(device_id):
            return True
        self.stats.dropped_rate_limited += 1
        self._drop_log.warning(
            what, "mqtt ingest dropped %s of device=%s: more than its rate", what, device_id
        )
        return False

    def _decode(self, message: Any, msg: mqtt.MQTTMessage, device_id: str) -> bool:
        if not msg.payload:  # an empty retained message only clears the topic
            return False
        try:
            message.ParseFromString(msg.payload)
        except DecodeError:
            self.stats.dropped_malformed += 1
            self._drop_log.warning(
                "malformed", "mqtt ingest dropped malformed payload on %s", msg.topic
            )
            return False
        if message.device_id != device_id:
            self.stats.dropped_device_mismatch += 1
            self._drop_log.warning(
                "mismatch",
                "mqtt ingest dropped payload for device=%r on topic of device=%s",
                message.device_id[:200],
                device_id,
            )
            return False
        return True

    def _call_sink(self, method: Any, *args: Any) -> bool:
        try:
            method(*args)
            return True
        except Exception:  # the sink's failure must not kill paho's thread
            self.stats.sink_errors += 1
            log.exception("telemetry sink failed device=%s", args[0])
            return False
