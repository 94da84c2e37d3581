"""TelemetryStore on SQLite and PostgreSQL: batched writes, cohort metrics, rollups, retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.services.telemetry import TelemetryStore, TelemetryStoreConfig
from controller.services.telemetry_math import (
    INF,
    ReportSample,
    Totals,
    cascade_accuracy,
    percentile,
    wilson_interval,
)
from controller.store.db import Database

HOUR_MS = 3_600_000


def sample(device: str, seq: int, end_ms: int, **counts: Any) -> ReportSample:
    return ReportSample(
        device_id=device,
        start_ms=end_ms - 10_000,
        end_ms=end_ms,
        model="digits",
        variant_id=f"digits:1:{'int8' if device.endswith('b') else 'fp32'}",
        sequence=seq,
        latency={2.0: 8, 10.0: 2},
        local_latency={1.0: 10},
        counts=counts,
    )


def test_cohort_metrics_rollups_and_retention(db: Database) -> None:
    now = 10 * 24 * HOUR_MS
    store = TelemetryStore(
        db,
        TelemetryStoreConfig(flush_interval_s=0.05, prune_interval_s=3600),
        clock=lambda: now / 1000,
    )
    store.start()
    try:
        counts = dict(frames=10, offloaded=2, offload_pairs=2, offload_agreed=1)
        counts.update(audit_pairs=2, audit_agreed=2)
        for seq in range(1, 7):  # three old (2 h ago, one minute), three recent
            end = now - 2 * HOUR_MS + seq * 1000 if seq <= 3 else now - seq * 1000
            assert store.submit(sample("dev-a", seq, end, **counts))
        assert store.submit(sample("dev-a", 6, now - 6000, **counts))  # a re-sent duplicate
        store.submit(sample("dev-b", 1, now - 1000, frames=5, bad_frames=1))
        assert store.flush(5)
        assert store.stats.duplicates == 1 and store.stats.written == 7

        everything = store.cohort_metrics(["dev-a", "dev-b"], now - 3 * HOUR_MS)
        assert everything.frames == 65 and everything.devices_reporting == 2
        assert everything.offload_rate == pytest.approx(12 / 65)
        assert everything.agreement_pairs == 24 and everything.agreement == pytest.approx(18 / 24)
        assert 2.0 < everything.p95_latency_ms <= 10.0  # type: ignore[operator]
        assert everything.p50_latency_ms is not None and everything.p50_latency_ms <= 2.0
        assert store.device_variant("dev-b") == "digits:1:int8"
        assert store.device_variant("nobody") is None

        rolled, expired = store.prune()
        assert (rolled, expired) == (3, 0)
        after = store.cohort_metrics(["dev-a", "dev-b"], now - 3 * HOUR_MS)
        assert (after.frames, after.reports, after.agreement_pairs) == (65, 7, 24)
        assert after.p95_latency_ms == pytest.approx(everything.p95_latency_ms)
        recent = store.cohort_metrics(["dev-a"], now - HOUR_MS)
        assert recent.frames == 30  # only raw reports of the last hour
        window = store.cohort_metrics(["dev-a"], now - 3 * HOUR_MS, now - HOUR_MS)
        assert window.frames == 30  # the rolled-up minute only

        short = TelemetryStore(db, TelemetryStoreConfig(rollup_retention_s=1.5 * 3600))
        assert short.prune(now) == (0, 1)  # the 2 h old minute has expired, nothing new to roll
        assert store.cohort_metrics(["dev-a", "dev-b"], 0).frames == 35
    finally:
        store.stop()


def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'q.db'}")
    database.migrate()
    store = TelemetryStore(database, TelemetryStoreConfig(queue_size=2))  # writer not started
    results = [store.submit(sample("dev-a", i, 1000 + i, frames=1)) for i in range(1, 5)]
    assert results == [True, True, False, False] and store.stats.dropped_queue_full == 2
    assert store.sequences("dev-a") == [1, 2, 3, 4]  # the latest state still saw them
    database.close()


def test_math() -> None:
    assert percentile({1.0: 1, 2.0: 1}, 0.5) == pytest.approx(1.0)
    assert percentile({5.0: 1, INF: 3}, 0.95) == 5.0  # overflow reports the last bound
    assert percentile({}, 0.5) is None
    lo, hi = wilson_interval(9, 10)
    assert 0.59 < lo < 0.6 and 0.98 < hi < 0.99
    assert wilson_interval(0, 0) == (0.0, 1.0)
    t = Totals(frames=100, offloaded=20, audit_pairs=10, audit_agreed=9)
    estimate = cascade_accuracy(t)
    assert estimate.value == pytest.approx(0.2 + 0.8 * 0.9)
    assert estimate.low < estimate.value < estimate.high  # type: ignore[operator]


I64_MAX = 2**63 - 1


def test_a_row_the_database_refuses_costs_no_other_report(db: Database) -> None:
    store = TelemetryStore(db, TelemetryStoreConfig(flush_interval_s=0.5, batch_size=100))
    for seq in range(1, 21):  # queued before the writer starts: one batch
        assert store.submit(sample("dev-a", seq, 1_000_000 + seq, frames=3))
    assert store.submit(sample("dev-h", 1, 1_000_000, frames=2**64))  # past any decode check
    store.start()
    try:
        assert store.flush(10)
    finally:
        store.stop()
    assert (store.stats.written, store.stats.write_errors) == (20, 1)
    totals = store.device_totals(0, 2_000_000)
    assert totals["dev-a"].frames == 60 and totals["dev-a"].reports == 20
    assert "dev-h" not in totals


def test_a_rollup_that_would_overflow_saturates_and_pruning_goes_on(db: Database) -> None:
    now = 10 * HOUR_MS
    store = TelemetryStore(db, TelemetryStoreConfig(raw_retention_s=60), clock=lambda: now / 1000)
    big = {"frames": I64_MAX, "audited": I64_MAX}
    for seq in (1, 2):  # the same minute: their sum does not fit a 64-bit column
        store._write([sample("dev-h", seq, HOUR_MS + seq, **big)])
    store._write([sample("dev-a", 1, HOUR_MS + 5, frames=4)])
    assert store.stats.written == 3
    assert store.prune() == (3, 0)
    totals = store.device_totals(0, now)
    assert totals["dev-a"].frames == 4
    assert totals["dev-h"].frames == I64_MAX and totals["dev-h"].reports == 2
    store._write([sample("dev-h", 3, HOUR_MS + 7, **big)])  # folds into the saturated rollup
    assert store.prune() == (1, 0)
    assert store.device_totals(0, now)["dev-h"].frames == I64_MAX
