"""Leader election on a real PostgreSQL: one leader at a time, takeover after the lease runs
out with a new fencing epoch, a deposed leader's rollout write refused, a rollout step
computed from a stale state refused, migrations of two replicas at once serialised, and one
TUF repository shared by two replicas created once and never losing a target."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from controller.errors import StaleWrite
from controller.rollout import RolloutSpec, initial_state
from controller.services.leadership import Leadership, LeaseConfig, SoleLeader, open_leadership
from controller.services.releases import Releases, StagedTarget, TufPaths
from controller.services.rollout_store import RolloutStore
from controller.store.db import TUF_LOCK_KEY, Database
from tests.fleet import postgres_available, postgres_database

pytestmark = pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL at 127.0.0.1")

LEASE = LeaseConfig(lease_s=1.0)


@pytest.fixture
def db(pg_db: Database) -> Database:
    return pg_db  # these tests need PostgreSQL: replicas share one


def _rollout(store: RolloutStore) -> str:
    spec = RolloutSpec(rollout_id="r1", model="tiny", version=1, stages=(1.0,))
    store.create(spec, initial_state())
    return spec.rollout_id


def test_one_leader_then_a_takeover_with_a_new_epoch_after_the_lease(db: Database) -> None:
    a, b = Leadership(db, "a", LEASE), Leadership(db, "b", LEASE)
    assert a.try_acquire() and a.epoch == 1
    assert not b.try_acquire() and not b.is_leader
    assert a.try_acquire() and a.epoch == 1  # a renewal keeps the term
    started = time.monotonic()
    while not b.try_acquire():  # a stops renewing (as if killed): b waits out the lease
        assert time.monotonic() - started < LEASE.lease_s + 1.0
        time.sleep(0.05)
    assert time.monotonic() - started >= LEASE.lease_s * 0.5
    assert b.epoch == 2
    assert not a.is_leader  # a's own view ran out with its lease, without asking anybody
    assert not a.try_acquire() and a.epoch is None


def test_a_deposed_leaders_late_rollout_write_is_refused(db: Database) -> None:
    store = RolloutStore(db)
    rid = _rollout(store)
    a, b = Leadership(db, "a", LEASE), Leadership(db, "b", LEASE)
    assert a.try_acquire()
    state = store.get(rid).state
    store.save_step(rid, state, [("info", "a's step")], expected=state, fence=a.fence)
    time.sleep(LEASE.lease_s + 0.1)
    assert b.try_acquire() and b.epoch == 2
    a._epoch, a._valid_until = 1, time.monotonic() + 60  # a paused: it still believes it leads
    before = store.get(rid)
    with pytest.raises(StaleWrite, match="lost the lease"):
        store.save_step(rid, before.state, [("info", "late")], expected=before.state, fence=a.fence)
    assert not a.is_leader
    store.save_step(rid, before.state, [("info", "b's step")], expected=before.state, fence=b.fence)
    messages = [e.message for e in store.events(rid)]
    assert "late" not in messages and "a's step" in messages and "b's step" in messages


def test_a_step_computed_from_a_stale_state_is_refused(db: Database) -> None:
    store = RolloutStore(db)
    rid = _rollout(store)
    read = store.get(rid).state
    moved = type(read).from_dict({**read.to_dict(), "phase": "rolling"})
    store.save_step(rid, moved, [("info", "first writer")], expected=read)
    with pytest.raises(StaleWrite, match="changed since"):
        store.save_step(rid, read, [("info", "second writer")], expected=read)
    assert store.get(rid).state.phase == "rolling"
    assert "second writer" not in [e.message for e in store.events(rid)]


def test_a_clean_stop_releases_the_lease_at_once(db: Database) -> None:
    a = Leadership(db, "a", LeaseConfig(lease_s=30.0))
    b = Leadership(db, "b", LeaseConfig(lease_s=30.0))
    a.start()
    assert a.wait_leader(5)
    heard: list[bool] = []
    b.listeners.append(heard.append)
    assert not b.try_acquire()
    a.stop()
    assert b.try_acquire() and b.epoch == 2 and heard == [True]


def test_sqlite_is_its_own_leader(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'one.db'}")
    database.migrate()
    leader = open_leadership(database, "x", 10.0)
    assert isinstance(leader, SoleLeader) and leader.is_leader
    leader.fence(None)
    database.close()


def test_two_replicas_migrating_at_once_both_succeed() -> None:
    with postgres_database() as url:
        errors: list[BaseException] = []
        databases = [Database(url), Database(url)]

        def migrate(database: Database) -> None:
            try:
                database.migrate()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=migrate, args=(d,)) for d in databases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for d in databases:
            d.close()
        assert errors == []


def _target(model: str) -> StagedTarget:
    return StagedTarget(
        f"models/{model}/1/x86/model.onnx", "ab" * 32, 10, {"model": model, "profile": "x86"}
    )


def test_replicas_sharing_the_tuf_repository_keep_each_others_targets(
    db: Database, tmp_path: Path
) -> None:
    paths = TufPaths.of(tmp_path / "shared")

    def exclusive() -> AbstractContextManager[None]:
        return db.advisory_lock(TUF_LOCK_KEY)

    made: list[Releases] = []
    threads = [
        threading.Thread(target=lambda: made.append(Releases(paths, exclusive=exclusive)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a, b = made  # both started on an empty directory: one repository, created once
    assert a.trusted_root() == b.trusted_root()
    b.replace_targets("models/beta/", [_target("beta")])  # b has staged targets in memory
    a.replace_targets("models/alpha/", [_target("alpha")])
    b.replace_targets("models/beta/", [_target("beta")])  # b publishes again after a did
    assert set(a.targets()) == {
        "models/alpha/1/x86/model.onnx",
        "models/beta/1/x86/model.onnx",
    }, "b's publish dropped a's target"
