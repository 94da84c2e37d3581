"""Controller costs that grew with the fleet, old way vs new way side by side, in one run.

    .venv/bin/python bench/bench_fleet_costs.py [--sizes 1000,5000] [--burst 100]

A fresh PostgreSQL database at 127.0.0.1:5432 per fleet size, N enrolled devices in it. For
each size, measured here (the old way re-enacted as it was written before the change):

- heartbeats: one from every device. Old: a SELECT + UPDATE transaction per heartbeat. New:
  DeviceRegistry with presence_flush_s (buffered, one batched UPDATE per flush).
- device lookups (every device call authenticates its certificate): uncached vs the TTL cache.
- fleet status: old: every device, then the telemetry of every id in one IN-list; new: all
  devices a page at a time, and one page of 100 (what a paged client asks for).
- a rollout step assigning every device: the old scan per lookup vs the index (lookups alone,
  and a real RolloutService step on PostgreSQL), and a tick with nothing to do.
- Mosquitto passwd: ``--burst`` concurrent enrollments, each rewriting the file of N devices
  (old) vs CoalescedAction, the default group commit (new): rewrites and wall time.
- retention: 10 * N expired events deleted in one statement (old) vs bounded batches (new):
  the longest single statement (how long the table's rows stay locked at once).

Prints one goal line per measured target.

Measured on this 2-core machine (PostgreSQL 15, load average 8-20 from other benchmarks
beside it: four runs, figures noisy), 5,000 devices: heartbeats 230-830/s old (2 statements
each) vs 12,000-36,000/s new (0.0002 statements each); device lookups 590-1,750/s uncached vs
230,000-1,400,000/s cached; fleet status 275-650 ms old vs 260-810 ms paged (all devices), one
page of 100 10-29 ms at 1,000 and at 5,000 alike; a rollout step assigning every device
2.1-6.5 s old vs 0.8-3.8 s new (one run new slower), a quiet tick 0.4-1.6 s old vs 0.28-1.1 s
new (goal 0.5 s MISSED in two of four: list_devices/statuses still read every targeted
device each tick); 100 concurrent enrollments: 100 passwd rewrites (0.7-3.6 s) vs 2-13
(0.07-0.25 s); retention of 50,000 events: longest statement old 11-24 ms vs 9-48 ms in
batches of 5,000 (MISSED: PostgreSQL deletes 50,000 rows in one statement quickly; the batch's
IN (SELECT ... LIMIT) costs more a row: the bound only pays at far larger backlogs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, event, insert, select  # noqa: E402

from controller.mqtt.coalesce import CoalescedAction  # noqa: E402
from controller.mqtt.credentials import write_mosquitto_auth  # noqa: E402
from controller.pki import CertificateAuthority  # noqa: E402
from controller.rollout.model import DeviceRollout, RolloutState  # noqa: E402
from controller.services import rollout_store  # noqa: E402
from controller.services.devices import DeviceRegistry  # noqa: E402
from controller.services.fleet import fleet_page, fleet_status  # noqa: E402
from controller.services.rollouts import RolloutService  # noqa: E402
from controller.services.telemetry import TelemetryStore  # noqa: E402
from controller.store.db import Database, delete_in_batches  # noqa: E402
from controller.store.models import DeviceRow  # noqa: E402
from controller.store.models_monitoring import FleetEventRow  # noqa: E402
from edgefleet.modelmeta import Preprocessing, VariantMetadata  # noqa: E402
from edgefleet.profiles import ProfileCatalogue  # noqa: E402
from tests.fleet import POSTGRES_ADMIN_URL, postgres_available  # noqa: E402

FAKE_HASH = "$7$101$" + "A" * 16 + "$" + "B" * 88


@contextmanager
def bench_database() -> Iterator[str]:
    import psycopg

    name = f"edgefleet_bench_costs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(db: Database, n: int) -> list[str]:
    ids = [f"dev-{i:06d}" for i in range(n)]
    rows = [
        {
            "device_id": d, "name": f"cam-{d}", "requested_profile": "auto", "profile": "cpu",
            "labels": {"site": f"s{i % 10}"}, "state": "enrolled", "facts": {},
            "cert_fingerprint": f"fp-{d}", "mqtt_password_hash": FAKE_HASH, "online": False,
            "last_seen_ms": 0, "agent_version": "", "created_ms": 1, "enrolled_ms": 1,
            "revoked_ms": 0,
        }
        for i, d in enumerate(ids)
    ]  # fmt: skip
    with db.session() as s:
        s.execute(insert(DeviceRow), rows)
    return ids


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Statements:
    def __init__(self, db: Database) -> None:
        self.count = 0
        self.longest_s = 0.0
        self._db = db
        self._started: dict[int, float] = {}

    def __enter__(self) -> Statements:
        event.listen(self._db.engine, "before_cursor_execute", self._before)
        event.listen(self._db.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self._db.engine, "before_cursor_execute", self._before)
        event.remove(self._db.engine, "after_cursor_execute", self._after)

    def _before(self, conn, *_args) -> None:
        self.count += 1
        self._started[id(conn)] = time.perf_counter()

    def _after(self, conn, *_args) -> None:
        took = time.perf_counter() - self._started.pop(id(conn), time.perf_counter())
        self.longest_s = max(self.longest_s, took)


def old_record_presence(db: Database, device_id: str, seen: int) -> None:
    """The per-heartbeat write as it was: SELECT the row, UPDATE it, one transaction."""
    with db.session() as s:
        row = s.get(DeviceRow, device_id)
        if row is None or row.state != "enrolled":
            return
        row.online = True
        row.last_seen_ms = max(row.last_seen_ms, seen)


def old_fleet_status(reg: DeviceRegistry, store: TelemetryStore) -> int:
    devices = reg.list_devices({})
    ids = [d.device_id for d in devices]
    store.device_variant_totals(int(time.time() * 1000) - 60_000, None, ids)
    return len(devices)


new_lookup = RolloutState.device


def old_scan(self: RolloutState, device_id: str) -> DeviceRollout:
    """RolloutState.device as it was: a scan of every device."""
    for d in self.devices:
        if d.device_id == device_id:
            return d
    raise KeyError(device_id)


class FakeVariants:
    """One built variant for profile cpu (what rollouts read of the model catalogue)."""

    def selected_variant(self, model: str, version: int, profile: str) -> Any:
        vid = f"{model}:{version}:fp32"
        meta = VariantMetadata(
            model=model, version=version, variant="fp32", variant_id=vid, runtime="onnxruntime",
            precision="fp32", file="model.onnx", input_name="x", input_shape=(-1, 4),
            input_dtype="float32", output_name="y", preprocessing=Preprocessing(size=(1, 1)),
        )  # fmt: skip
        return SimpleNamespace(variant_id=vid, target_path=f"models/{vid}", sha256="a" * 64,
                               size=10, metadata=meta)  # fmt: skip

    def check_release(self, model: str, version: int) -> None:
        pass

    def release_variants(self, model: str, version: int) -> dict[str, Any]:
        return {"cpu": self.selected_variant(model, version, "cpu")}

    def variant_for(self, variant_id: str, profile: str) -> Any:
        model, version, _ = variant_id.split(":")
        return self.selected_variant(model, int(version), profile)


new_desired_rows = rollout_store._desired_rows


def old_desired_rows(s: Any, device_ids: list[str]) -> dict[str, Any]:
    """The old write read each device's desired row on its own (its INSERT/UPDATE then went
    out one by one with the next read's autoflush: not re-enacted, so old is flattered)."""
    rows = (s.get(rollout_store.DesiredStateRow, d) for d in device_ids)
    return {r.device_id: r for r in rows if r is not None}


def rollout_step(db: Database, targets: Callable[..., Any]) -> tuple[float, float]:
    """StartRollout's first step assigning every device (one stage, downloads unbounded), then
    a tick with nothing new; the rollout is aborted afterwards (the next one may start)."""
    svc = RolloutService(db, targets, FakeVariants())
    n = len(targets({}))
    spec = {"model": "m", "version": 1 + int(time.time() * 1000) % 10**6, "stages": [1.0],
            "max_concurrent_downloads": n, "soak_seconds": 60}  # fmt: skip
    started = time.perf_counter()
    rid = svc.start_rollout(spec).rollout_id
    first_s = time.perf_counter() - started
    assert svc.get(rid).state.count("assigned") == n
    quiet_s = timed(svc.tick)
    svc.command(rid, "abort", "bench")
    return first_s, quiet_s


def measure(n: int, burst: int, workdir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with bench_database() as url:
        db = Database(url, pool_size=8)
        db.migrate()
        ids = seed(db, n)
        ca = CertificateAuthority(workdir / f"pki-{n}")
        profiles = ProfileCatalogue.load(None)

        def registry(
            presence_flush_s: float = 0.0, auth_cache_ttl_s: float = 0.0
        ) -> DeviceRegistry:
            return DeviceRegistry(db, ca, profiles, hash_mqtt_password=str,
                                  presence_flush_s=presence_flush_s,
                                  auth_cache_ttl_s=auth_cache_ttl_s)  # fmt: skip

        # heartbeats
        with Statements(db) as old_st:
            old_s = timed(lambda: [old_record_presence(db, d, 1000 + i) for i, d in enumerate(ids)])  # type: ignore[func-returns-value]
        reg = registry(presence_flush_s=1.0)

        def new_beats() -> None:
            for i, d in enumerate(ids):
                reg.record_presence(d, online=True, unix_ms=2000 + i)
            reg.flush_presence()

        with Statements(db) as new_st:
            new_s = timed(new_beats)
        out |= {"hb_old": n / old_s, "hb_new": n / new_s}
        print(f"  heartbeats of {n}: old {n / old_s:,.0f}/s ({old_st.count / n:.2f} statements "
              f"each), new {n / new_s:,.0f}/s ({new_st.count / n:.4f} statements each): "
              f"{old_s / new_s:.1f}x", flush=True)  # fmt: skip
        out["hb_statements"] = new_st.count / n

        # device lookups
        uncached, cached = registry(), registry(auth_cache_ttl_s=60.0)
        for d in ids:
            cached.authenticate(f"fp-{d}")
        old_s = timed(lambda: [uncached.authenticate(f"fp-{d}") for d in ids])
        new_s = timed(lambda: [cached.authenticate(f"fp-{d}") for d in ids])
        out |= {"auth_old": n / old_s, "auth_new": n / new_s}
        print(f"  device lookups of {n}: uncached {n / old_s:,.0f}/s, cached {n / new_s:,.0f}/s:"
              f" {old_s / new_s:.0f}x", flush=True)  # fmt: skip

        # fleet status
        store = TelemetryStore(db)
        old_s = min(timed(lambda: old_fleet_status(uncached, store)) for _ in range(2))
        all_s = min(timed(lambda: fleet_status(uncached, store)) for _ in range(2))
        page_s = min(timed(lambda: fleet_page(uncached, store, limit=100)) for _ in range(3))
        out |= {"fs_old": old_s, "fs_all": all_s, "fs_page": page_s}
        print(
            f"  fleet status of {n}: old {old_s * 1000:.0f} ms, every device paged "
            f"{all_s * 1000:.0f} ms, one page of 100 {page_s * 1000:.1f} ms",
            flush=True,
        )

        # rollout step lookups
        state = RolloutState(
            devices=tuple(
                DeviceRollout(d, "cpu", "pending", None, "m:1:v", 0, "", 0.0, False) for d in ids
            )
        )

        def old_device(device_id: str) -> DeviceRollout:
            for d in state.devices:
                if d.device_id == device_id:
                    return d
            raise KeyError(device_id)

        old_s = timed(lambda: [old_device(d) for d in ids])
        new_s = timed(lambda: [state.device(d) for d in ids])
        out |= {"ro_old": old_s, "ro_new": new_s}
        print(
            f"  rollout step assigning {n}: lookups old {old_s * 1000:.0f} ms, new "
            f"{new_s * 1000:.1f} ms",
            flush=True,
        )

        # a real rollout step on PostgreSQL assigning every device, then a quiet tick
        for label in ("old", "new"):
            if label == "old":  # the scan per lookup, a SELECT per desired row, every column
                RolloutState.device = old_scan  # type: ignore[method-assign]
                rollout_store._desired_rows = old_desired_rows
            try:
                first_s, quiet_s = rollout_step(
                    db, uncached.list_devices if label == "old" else uncached.rollout_targets
                )
            finally:
                RolloutState.device = new_lookup  # type: ignore[method-assign]
                rollout_store._desired_rows = new_desired_rows
            out |= {f"tick_{label}": first_s, f"quiet_{label}": quiet_s}
        print(
            f"  rollout of {n}: step assigning all old {out['tick_old']:.2f} s, new "
            f"{out['tick_new']:.2f} s; a quiet tick old {out['quiet_old'] * 1000:.0f} ms, "
            f"new {out['quiet_new'] * 1000:.0f} ms",
            flush=True,
        )

        # Mosquitto passwd rewrites for a burst of enrollments
        directory = workdir / f"mosquitto-{n}"
        credentials = [(d, FAKE_HASH) for d in ids]
        rewrites = {"n": 0}

        def rewrite() -> None:
            rewrites["n"] += 1
            write_mosquitto_auth(directory, "controller-secret", credentials)

        def enrollments(call: Callable[[], None]) -> float:
            threads = [threading.Thread(target=call) for _ in range(burst)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - started

        lock = threading.Lock()

        def old_call() -> None:  # each enrollment rewrote the file (under the broker's lock)
            with lock:
                rewrite()

        old_s = enrollments(old_call)
        old_rewrites, rewrites["n"] = rewrites["n"], 0
        new_s = enrollments(CoalescedAction(rewrite))  # the default: a group commit
        out |= {"pw_old": old_rewrites, "pw_new": rewrites["n"]}
        print(f"  {burst} enrollments, passwd of {n}: old {old_rewrites} rewrites in {old_s:.2f} s,"
              f" new {rewrites['n']} in {new_s:.2f} s", flush=True)  # fmt: skip

        # retention
        def expired_events() -> None:
            with db.session() as s:
                s.execute(delete(FleetEventRow))
                rows = [{"unix_ms": i, "kind": "k", "message": "m"} for i in range(10 * n)]
                s.execute(insert(FleetEventRow), rows)

        expired_events()
        with Statements(db) as old_st, db.session() as s:
            s.execute(delete(FleetEventRow).where(FleetEventRow.unix_ms < 10**12))
        expired_events()
        with Statements(db) as new_st:
            delete_in_batches(db, (FleetEventRow.event_id,), FleetEventRow.unix_ms < 10**12)
        with db.session() as s:
            assert s.scalar(select(FleetEventRow.event_id).limit(1)) is None
        out |= {"prune_old": old_st.longest_s, "prune_new": new_st.longest_s}
        print(
            f"  retention of {10 * n:,} events: longest statement old "
            f"{old_st.longest_s * 1000:.0f} ms, new {new_st.longest_s * 1000:.0f} ms "
            f"({new_st.count} statements)",
            flush=True,
        )
        db.close()
    return out


def goal(name: str, measured: float, op: str, target: float, unit: str = "") -> None:
    ok = measured >= target if op == ">=" else measured <= target
    print(f"goal {name}: {measured:.3g}{unit} (target {op} {target:g}{unit}) "
          f"{'OK' if ok else 'MISSED'}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--burst", type=int, default=100, help="concurrent enrollments")
    args = parser.parse_args()
    if not postgres_available():
        print("no PostgreSQL at 127.0.0.1:5432", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as tmp:
        for n in sizes:
            print(f"fleet of {n:,} devices (PostgreSQL)", flush=True)
            results[n] = measure(n, args.burst, Path(tmp))
    big, small = results[sizes[-1]], results[sizes[0]]
    n = sizes[-1]
    goal(f"heartbeat writes new/old at {n}", big["hb_new"] / big["hb_old"], ">=", 5.0, "x")
    goal(f"statements per heartbeat at {n}", big["hb_statements"], "<=", 0.01)
    goal(f"device lookups cached/uncached at {n}", big["auth_new"] / big["auth_old"], ">=", 10.0,
         "x")  # fmt: skip
    if len(sizes) > 1:
        scale = sizes[-1] / sizes[0]
        goal(f"one fleet-status page at {sizes[-1]} vs {sizes[0]}",
             big["fs_page"] / small["fs_page"], "<=", 2.0, "x")  # fmt: skip
        goal(f"rollout lookups {scale:g}x the devices",
             big["ro_new"] / small["ro_new"], "<=", 2 * scale, "x")  # fmt: skip
    goal(f"rollout step assigning {n} new vs old", big["tick_new"] / big["tick_old"], "<=", 0.5,
         "x")  # fmt: skip
    goal(f"quiet rollout tick at {n}", big["quiet_new"], "<=", 0.5, " s")
    goal(f"passwd rewrites for {args.burst} enrollments at {n}", big["pw_new"], "<=",
         args.burst / 10)  # fmt: skip
    goal(f"longest retention statement new/old at {n}",
         big["prune_new"] / max(big["prune_old"], 1e-9), "<=", 0.5, "x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
