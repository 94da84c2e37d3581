"""Two controller replicas (real processes, each with a data directory of its own, the CA and
secrets from one secrets directory, the TUF repository and artifact store shared) on one
PostgreSQL and one Mosquitto: the leader is
SIGKILLed mid-rollout and the other replica finishes the rollout within the lease plus a few
ticks; devices keep reporting telemetry through the kill, and every report the broker
acknowledged to a device is stored exactly once (the killed replica, restarted under its
replica id, gets what the broker queued in its session)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import create_engine, func, select

from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from controller.store.db import normalize_url
from controller.store.models_telemetry import TelemetryReportRow
from edgefleet import topics
from edgefleet.v1 import report_pb2, rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import postgres_available, postgres_database
from tests.replicas import (
    MOSQUITTO,
    ReplicaAdmin,
    lease_holder,
    shared_mosquitto,
    start_replica,
    wait_leader,
)
from tests.rollout_fleet import add_and_build, rollout_status, start_agent, wait_for

pytestmark = [
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed"),
    pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL at 127.0.0.1"),
]
LEASE_S, TICK_S = 3.0, 0.3


class Reporter:
    """A device's telemetry: a report every ``interval_s`` (QoS 1), and the sequence numbers
    the broker acknowledged."""

    # far from the sequence numbers of an agent's own telemetry publisher on the same device
    FIRST_SEQUENCE = 1_000_000

    def __init__(self, identity: Identity, interval_s: float = 0.25) -> None:
        self.device_id = identity.device_id
        self.acked: list[int] = []
        self._interval_s = interval_s
        self._stop = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{identity.device_id}-reports",
        )
        client.username_pw_set(identity.mqtt_username, identity.mqtt_password)
        client.connect("127.0.0.1", int(identity.mqtt_url.rsplit(":", 1)[1]))
        client.loop_start()
        self._client = client
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        topic = topics.device_topic(self.device_id, topics.TELEMETRY)
        seq = self.FIRST_SEQUENCE
        while not self._stop.wait(self._interval_s):
            seq += 1
            end = int(time.time() * 1000)
            report = report_pb2.TelemetryReport(
                device_id=self.device_id, sequence=seq, frames=20,
                interval_start_unix_ms=end - int(self._interval_s * 1000),
                interval_end_unix_ms=end,
            )  # fmt: skip
            info = self._client.publish(topic, report.SerializeToString(), qos=1)
            try:
                info.wait_for_publish(2)
            except (RuntimeError, ValueError):
                continue
            if info.is_published():
                self.acked.append(seq)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.loop_stop()
        self._client.disconnect()


def _stored(db_url: str) -> dict[str, list[int]]:
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(TelemetryReportRow.device_id, TelemetryReportRow.sequence))
            out: dict[str, list[int]] = defaultdict(list)
            for device_id, seq in rows:
                out[device_id].append(int(seq))
            return out
    finally:
        engine.dispose()


def _count(db_url: str) -> int:
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(TelemetryReportRow)) or 0)
    finally:
        engine.dispose()


def _eventually(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_leader_killed_mid_rollout_the_other_replica_finishes_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "controllers"  # replica-a/, replica-b/, secrets/, shared/
    closers: list = []  # type: ignore[type-arg]
    with postgres_database() as db_url, shared_mosquitto(data_dir) as broker:
        a = start_replica(data_dir, db_url, broker, "a", lease_s=LEASE_S, tick_s=TICK_S)
        closers.append(a.stop)
        try:
            wait_leader(db_url, "a", 10)
            b = start_replica(data_dir, db_url, broker, "b", lease_s=LEASE_S, tick_s=TICK_S)
            closers.append(b.stop)
            admin_a, admin_b = ReplicaAdmin(data_dir, a), ReplicaAdmin(data_dir, b)
            closers += [admin_a.close, admin_b.close]
            version = add_and_build(admin_a, tmp_path, "tiny", 8)  # built on the leader

            # devices enroll with (and talk to) replica b; a leads, assigns and publishes
            facts, agents, reporters = detect(), [], []
            for i in range(6):
                name = f"cam-{i}"
                token = admin_b.register(name, "auto", site="lab" if i < 3 else "depot")
                identity = enroll(tmp_path / name, admin_b.address, token, facts)
                if i < 3:
                    agent = start_agent(tmp_path / name, identity)
                    agents.append(agent)
                    closers.append(agent.close)
                reporter = Reporter(identity)
                reporters.append(reporter)
                closers.append(reporter.stop)

            stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin_b.channel)
            rollout_id = stub.StartRollout(
                rollouts_pb2.StartRolloutRequest(
                    model="tiny", version=version, selector={"site": "lab"},
                    stages=[0.34, 1.0], min_devices=1, soak_seconds=1.0, min_samples=10,
                    gates=["error_rate <= 0.5"], max_concurrent_downloads=10,
                ),
                timeout=10,
            ).rollout.rollout_id  # fmt: skip

            def progressed() -> bool:
                return any(a.variant for a in agents)

            wait_for("the canary installed", progressed, 90)
            status = rollout_status(stub, rollout_id).rollout
            assert status.phase not in ("completed", "halted", "aborted"), status.phase
            a.kill()  # mid-rollout: the canary is in, the rest not
            killed_at = time.monotonic()

            failover_s = wait_leader(db_url, "b", LEASE_S + 5)
            assert failover_s <= LEASE_S + 2 * TICK_S + 1.0, failover_s
            wait_for(
                "the rollout completed by replica b",
                lambda: rollout_status(stub, rollout_id).rollout.phase == "completed",
                60,
            )
            finished_s = time.monotonic() - killed_at
            assert all(a.variant is not None for a in agents)
            held = lease_holder(db_url)
            assert held is not None and held[0] == "b" and held[1] == 2
            events = [e.message for e in rollout_status(stub, rollout_id).events]
            assert sum("completed" in m for m in events) <= 1, events

            for reporter in reporters:
                reporter.stop()
            # a restarted under its own id: the broker delivers what it queued in a's session
            a2 = start_replica(data_dir, db_url, broker, "a", lease_s=LEASE_S, tick_s=TICK_S)
            closers.append(a2.stop)
            acked = {r.device_id: set(r.acked) for r in reporters}

            def all_stored() -> bool:
                stored = _stored(db_url)
                return all(seqs <= set(stored.get(d, [])) for d, seqs in acked.items())

            if not _eventually(all_stored, 30):
                stored = _stored(db_url)
                missing = {d: sorted(q - set(stored.get(d, []))) for d, q in acked.items()}
                raise AssertionError(f"acknowledged reports not stored: {missing}")
            stored = _stored(db_url)
            for device_id, seqs in stored.items():
                assert len(seqs) == len(set(seqs)), f"{device_id} stored a report twice"
            assert _count(db_url) == sum(len(s) for s in stored.values())
            assert sum(len(s) for s in acked.values()) >= 6 * 10
            print(f"failover {failover_s:.2f} s, rollout finished {finished_s:.1f} s after kill")
        finally:
            for close in reversed(closers):
                with contextlib.suppress(Exception):  # keep closing the rest
                    close()
