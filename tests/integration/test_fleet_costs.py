"""Costs that follow the work, not the fleet: statements counted on a real database (SQLite,
and PostgreSQL when the local server is up) with SQLAlchemy's cursor events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import delete, event, insert, select

from controller.pki import CertificateAuthority
from controller.services.devices import DeviceRegistry
from controller.store.db import Database
from controller.store.models import DeviceRow
from edgefleet.errors import Unauthenticated
from edgefleet.profiles import ProfileCatalogue
from tests.fleet import postgres_available, postgres_database

FLEET = 300


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("no local PostgreSQL")
    with postgres_database() as url:
        Database(url).migrate()
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """One PostgreSQL database per module (emptied per test): creating one costs seconds."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
        database.migrate()
    else:
        database = Database(request.getfixturevalue("postgres_url"), pool_size=4)
        with database.session() as s:
            s.execute(delete(DeviceRow))
    yield database
    database.close()


def enrolled_fleet(db: Database, n: int) -> list[str]:
    ids = [f"dev-{i:06d}" for i in range(n)]
    rows = [
        {
            "device_id": d, "name": f"cam-{d}", "requested_profile": "auto", "profile": "cpu",
            "labels": {"site": "a" if i % 2 else "b"}, "state": "enrolled", "facts": {},
            "cert_fingerprint": f"fp-{d}", "mqtt_password_hash": "x", "online": False,
            "last_seen_ms": 0, "agent_version": "", "created_ms": 1, "enrolled_ms": 1,
            "revoked_ms": 0,
        }
        for i, d in enumerate(ids)
    ]  # fmt: skip
    with db.session() as s:
        s.execute(insert(DeviceRow), rows)
    return ids


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def registry(db: Database, tmp_path: Path, **kwargs: float) -> DeviceRegistry:
    ca = CertificateAuthority(tmp_path / "pki")
    return DeviceRegistry(
        db, ca, ProfileCatalogue.load(None), hash_mqtt_password=lambda p: p, **kwargs
    )


def test_heartbeats_of_a_fleet_are_one_batched_update(db: Database, tmp_path: Path) -> None:
    ids = enrolled_fleet(db, FLEET)
    reg = registry(db, tmp_path, presence_flush_s=1.0)
    with statements(db) as seen:
        for round_ in range(3):  # three heartbeats from every device before the flush
            for i, device_id in enumerate(ids):
                reg.record_presence(
                    device_id, online=True, unix_ms=1000 + round_ * 10 + i, agent_version="1.2"
                )
        assert seen == []  # nothing per heartbeat
        assert reg.flush_presence() == FLEET
    # one UPDATE (executemany) for 900 heartbeats; the old path was a SELECT + UPDATE each
    assert seen.count("UPDATE") == 1 and seen.count("SELECT") == 0, seen
    with db.session() as s:
        rows = dict(s.execute(select(DeviceRow.device_id, DeviceRow.last_seen_ms)).all())
        versions = set(s.scalars(select(DeviceRow.agent_version)))
    assert rows[ids[7]] == 1027 and versions == {"1.2"}
    # the latest of the device's clocks wins, an older one does not move it back
    reg.record_presence(ids[7], online=True, unix_ms=5)
    assert reg.get(ids[7]).last_seen_ms == 1027  # a read flushes first: read-your-writes


def test_presence_of_a_revoked_or_unknown_device_is_not_stored(
    db: Database, tmp_path: Path
) -> None:
    ids = enrolled_fleet(db, 3)
    reg = registry(db, tmp_path, presence_flush_s=1.0)
    reg.record_presence(ids[0], online=True, unix_ms=50)
    reg.revoke(ids[0])  # flushes what arrived before, then revokes
    reg.record_presence(ids[0], online=True, unix_ms=60)  # its broker session outlived it
    reg.record_presence("dev-nobody", online=True, unix_ms=60)
    reg.flush_presence()
    revoked = reg.get(ids[0])
    assert revoked.state == "revoked" and not revoked.online and revoked.last_seen_ms == 50


def test_device_lookups_are_cached_and_revocation_holds_at_once(
    db: Database, tmp_path: Path
) -> None:
    ids = enrolled_fleet(db, FLEET)
    reg = registry(db, tmp_path, auth_cache_ttl_s=60.0)
    for device_id in ids:
        reg.authenticate(f"fp-{device_id}")
    with statements(db) as seen:
        for _ in range(5):
            for device_id in ids:
                assert reg.authenticate(f"fp-{device_id}").device_id == device_id
    assert seen == []  # 1,500 device calls, no query
    reg.revoke(ids[3])
    with pytest.raises(Unauthenticated, match="revoked"):
        reg.authenticate(f"fp-{ids[3]}")
    assert reg.label(ids[4], {"site": "c"}, []).labels["site"] == "c"
    assert reg.authenticate(f"fp-{ids[4]}").labels["site"] == "c"  # relabelled: read again
    with pytest.raises(Unauthenticated):
        reg.authenticate("fp-unknown")


def test_the_flusher_stores_heartbeats_within_its_interval(db: Database, tmp_path: Path) -> None:
    ids = enrolled_fleet(db, 10)
    reg = registry(db, tmp_path, presence_flush_s=0.05)
    stopped = threading.Event()
    flusher = threading.Thread(target=reg.run_presence_flusher, args=(stopped,))
    flusher.start()
    try:
        reg.record_presence(ids[1], online=True, unix_ms=77)
        deadline = threading.Event()
        for _ in range(100):
            with db.session() as s:
                if s.scalar(select(DeviceRow.last_seen_ms).where(DeviceRow.device_id == ids[1])):
                    break
            deadline.wait(0.02)
        else:
            pytest.fail("the flusher never stored the heartbeat")
        reg.record_presence(ids[2], online=True, unix_ms=88)
    finally:
        stopped.set()
        flusher.join(5)
    with db.session() as s:  # stopping flushes what was still waiting
        assert s.scalar(select(DeviceRow.last_seen_ms).where(DeviceRow.device_id == ids[2])) == 88


def test_retention_deletes_in_bounded_batches(db: Database, tmp_path: Path) -> None:
    from controller.monitoring.events import EventLog, FleetEvent
    from controller.store.db import delete_in_batches
    from controller.store.models_monitoring import FleetEventRow as E

    log = EventLog(db)
    with db.session() as s:
        s.execute(delete(E))
        s.execute(insert(E), [{"unix_ms": i, "kind": "k", "message": "m"} for i in range(350)])
    log.record(FleetEvent("kept", "a recent one"))
    with statements(db) as seen:
        assert delete_in_batches(db, (E.event_id,), E.unix_ms < 1_000, batch=100) == 350
    assert seen.count("DELETE") == 4  # 100 + 100 + 100 + 50: no statement over the batch
    with db.session() as s:
        assert [k for k in s.scalars(select(E.kind))] == ["kept"]
    assert log.prune(10**15) == 1  # the store's own retention uses it


def test_fleet_status_reads_page_by_page(db: Database, tmp_path: Path) -> None:
    from controller.services.fleet import SCAN_PAGE, fleet_page, fleet_status
    from controller.services.telemetry import TelemetryStore

    n = SCAN_PAGE * 2 + 37
    enrolled_fleet(db, n)
    reg = registry(db, tmp_path)
    store = TelemetryStore(db)
    biggest_in: list[int] = []

    def params(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "telemetry" in statement:
            biggest_in.append(len(parameters or ()))

    event.listen(db.engine, "before_cursor_execute", params)
    try:
        views = fleet_status(reg, store)
        site_a = fleet_status(reg, store, selector={"site": "a"})
    finally:
        event.remove(db.engine, "before_cursor_execute", params)
    assert [v.name for v in views] == sorted(f"cam-dev-{i:06d}" for i in range(n))
    assert len(site_a) == n // 2 and all(int(v.device_id[-6:]) % 2 for v in site_a)
    # telemetry asked a page at a time (a bounded IN-list), never for all ids at once
    assert biggest_in and max(biggest_in) <= SCAN_PAGE + 4, max(biggest_in)
    pages, after = [], ""
    while True:  # what the CLI does: pages of a given size, the token from the last answer
        page = fleet_page(reg, store, selector={"site": "b"}, after=after, limit=300)
        pages.append(len(page.views))
        after = page.next_after
        if not after:
            break
    assert sum(pages) == n - n // 2 and max(pages) == 300


def test_a_rollout_step_assigning_a_fleet_reads_desired_rows_in_chunks(db: Database) -> None:
    from types import SimpleNamespace

    from controller.services.rollouts import RolloutService
    from tests.integration.test_rollouts_persistence import Variants

    fleet = [
        SimpleNamespace(device_id=f"d{i:05d}", profile="p", state="enrolled", labels={})
        for i in range(FLEET * 4)
    ]
    svc = RolloutService(db, lambda _selector: fleet, Variants())
    spec = {"model": "m", "version": 1, "stages": [1.0], "soak_seconds": 60,
            "max_concurrent_downloads": len(fleet)}  # fmt: skip
    with statements(db) as seen:
        rid = svc.start_rollout(spec).rollout_id
    assert svc.get(rid).state.count("assigned") == len(fleet)
    # the old step read each device's desired row on its own: a SELECT per assigned device
    assert seen.count("SELECT") < 30, f"{seen.count('SELECT')} SELECTs for {len(fleet)} devices"
    revisions = {s.desired.revision for s in svc.store.statuses().values()}
    assert revisions == {1}
    svc.command(rid, "abort", "test")  # withdraws every assignment: rows updated, not added
    assert {s.desired.revision for s in svc.store.statuses().values()} == {2}


def test_rollout_targets_are_the_enrolled_devices_a_step_reads(
    db: Database, tmp_path: Path
) -> None:
    ids = enrolled_fleet(db, 6)
    reg = registry(db, tmp_path)
    reg.revoke(ids[0])
    with db.session() as s:
        s.get(DeviceRow, ids[1]).profile = ""  # type: ignore[union-attr]  # not resolved yet
    targets = reg.rollout_targets({"site": "a"})
    assert [t.device_id for t in targets] == [ids[3], ids[5]]
    assert all(t.state == "enrolled" and t.profile == "cpu" for t in targets)
    every = [d.device_id for d in reg.list_devices() if d.state == "enrolled" and d.profile]
    assert [t.device_id for t in reg.rollout_targets()] == every


def test_a_failed_flush_keeps_its_heartbeats_and_never_fails_a_read(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.errors import StoreError
    from controller.services import presence

    ids = enrolled_fleet(db, 2)
    reg = registry(db, tmp_path, presence_flush_s=1.0)
    reg.record_presence(ids[0], online=True, unix_ms=40)
    real = presence._UPDATE
    monkeypatch.setattr(presence, "_UPDATE", "not sql")  # the flush fails (like a deadlock)
    with pytest.raises(StoreError):
        reg.flush_presence()
    assert reg.get(ids[1]).state == "enrolled"  # a read flushes first: its failure is no error
    monkeypatch.setattr(presence, "_UPDATE", real)
    reg.record_presence(ids[0], online=True, unix_ms=30)
    assert reg.flush_presence() == 1  # the kept heartbeat, merged with the newer one
    assert reg.get(ids[0]).last_seen_ms == 40
