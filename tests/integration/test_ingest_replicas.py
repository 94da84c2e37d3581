"""Telemetry ingest for replicas, on a real Mosquitto and a real PostgreSQL: a report is
acknowledged only once stored (a write the database refuses leaves it unacknowledged, the
ingest reconnects and the broker delivers it again), each report is stored once however often
it is delivered, and two ingests in one shared subscription split the reports between them."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select, text

from controller.mqtt.credentials import hash_password, write_mosquitto_auth
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from controller.services.telemetry import TelemetryStore
from controller.services.telemetry_math import ReportSample
from controller.store.db import Database
from controller.store.models_telemetry import TelemetryReportRow
from edgefleet import topics
from edgefleet.v1 import report_pb2, telemetry_pb2
from tests.conftest import wait_until
from tests.fleet import postgres_available
from tests.replicas import mosquitto_on

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = [
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed"),
    pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL at 127.0.0.1"),
]
CONTROLLER_PASSWORD = "controller-secret"
DEVICE, DEVICE_PASSWORD = "cam-replicas-1", "device-secret"


@dataclass
class Broker:
    url: str
    port: int


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    auth = tmp_path / "auth"
    write_mosquitto_auth(auth, CONTROLLER_PASSWORD, [(DEVICE, hash_password(DEVICE_PASSWORD))])
    with mosquitto_on(auth, tmp_path) as shared:
        yield Broker(f"mqtt://127.0.0.1:{shared.port}", shared.port)


@pytest.fixture
def db(pg_db: Database) -> Database:
    return pg_db  # these tests need PostgreSQL: replicas share one


class StoreSink:
    """What the controller's DeviceMessages does with telemetry: into the store, acked later."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self.received = 0

    def device_status(self, *_args: object) -> None: ...

    def device_heartbeat(self, _device_id: str, _beat: telemetry_pb2.Heartbeat) -> None: ...

    def device_telemetry(
        self, device_id: str, sample: ReportSample, on_stored: Callable[[], None] | None = None
    ) -> None:
        self.received += 1
        self.store.submit_from(device_id, sample, on_stored)


def _replica(broker: Broker, db: Database, name: str, group: str = "") -> ControllerMqttIngest:
    store = TelemetryStore(db)
    store.start()
    ingest = ControllerMqttIngest(
        IngestConfig(
            url=broker.url,
            password=CONTROLLER_PASSWORD,
            client_id=f"edgefleet-ingest-{name}",
            shared_group=group,
            ack_after_store=True,
            redeliver_min_interval_s=0.5,
        ),
        StoreSink(store),
    )
    store.write_failed_listeners.append(ingest.redeliver)
    ingest.start()
    assert ingest.wait_connected(10), f"ingest {name} did not connect"
    return ingest


def _stop(ingest: ControllerMqttIngest) -> None:
    ingest.stop()
    sink = ingest._sink
    assert isinstance(sink, StoreSink)
    sink.store.stop()


def _device(broker: Broker) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, clean_session=True
    )
    client.username_pw_set(DEVICE, DEVICE_PASSWORD)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


BASE_MS = int(time.time() * 1000)  # every report's window is fixed by its sequence


def _publish(client: mqtt.Client, sequences: range) -> None:
    topic = topics.device_topic(DEVICE, topics.TELEMETRY)
    now = BASE_MS
    for seq in sequences:
        report = report_pb2.TelemetryReport(
            device_id=DEVICE, sequence=seq, frames=10,
            interval_start_unix_ms=now - 10_000 + seq, interval_end_unix_ms=now + seq,
        )  # fmt: skip
        info = client.publish(topic, report.SerializeToString(), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()


def _stored(db: Database) -> list[int]:
    with db.session() as s:
        return sorted(s.scalars(select(TelemetryReportRow.sequence)).all())


def _sequences_of(start: int, n: int) -> range:
    return range(start, start + n)


@pytest.mark.timeout(60)
def test_a_refused_write_is_not_acknowledged_and_comes_again(broker: Broker, db: Database) -> None:
    ingest = _replica(broker, db, "a")
    device = _device(broker)
    try:
        with db.session() as s:  # the database now refuses every new report
            s.execute(text(
                "ALTER TABLE telemetry_reports ADD CONSTRAINT refuse_all CHECK (frames < 0) "
                "NOT VALID"
            ))  # fmt: skip
        _publish(device, _sequences_of(1, 5))
        sink = ingest._sink
        assert isinstance(sink, StoreSink)
        assert wait_until(lambda: sink.store.stats.write_errors >= 5, 10)
        assert _stored(db) == []
        assert wait_until(lambda: ingest.redeliveries >= 1, 5)
        with db.session() as s:
            s.execute(text("ALTER TABLE telemetry_reports DROP CONSTRAINT refuse_all"))
        # unacknowledged, so the broker delivers them again after the ingest reconnects
        assert wait_until(lambda: _stored(db) == [1, 2, 3, 4, 5], 20), _stored(db)
        _publish(device, _sequences_of(6, 3))
        assert wait_until(lambda: _stored(db) == list(range(1, 9)), 10), _stored(db)
    finally:
        device.loop_stop()
        device.disconnect()
        _stop(ingest)


@pytest.mark.timeout(60)
def test_shared_subscription_splits_reports_and_stores_each_once(
    broker: Broker, db: Database
) -> None:
    a = _replica(broker, db, "a", group="edgefleet-ingest")
    b = _replica(broker, db, "b", group="edgefleet-ingest")
    device = _device(broker)
    try:
        _publish(device, _sequences_of(1, 40))
        _publish(device, _sequences_of(1, 10))  # the device re-sends (its ack was lost)
        assert wait_until(lambda: _stored(db) == list(range(1, 41)), 15), _stored(db)
        got = [r._sink.received for r in (a, b)]  # type: ignore[attr-defined]
        assert sum(got) == 50 and min(got) > 0, got  # each delivery to one replica, both used
        with db.session() as s:
            rows = s.scalar(select(func.count()).select_from(TelemetryReportRow))
        assert rows == 40
    finally:
        device.loop_stop()
        device.disconnect()
        _stop(a)
        _stop(b)
