"""TelemetryStore: validated reports in, batched writes, latest state, metrics for gates and CLI.

`submit()` is called on the MQTT thread: it updates the in-memory latest state and puts the
sample on a bounded queue (full queue: the sample is counted in `stats.dropped_queue_full`);
one writer thread inserts queued samples in batches. `prune()` (run periodically by the
writer, on the leader replica only: ``prune_gate``) folds raw reports older than
`raw_retention_s` into one-minute rollups and deletes rollups older than `rollup_retention_s`.

Storage is idempotent: a report already stored (same device, sequence and window start: the
unique key of migration 0011) is ignored, so a report redelivered by the broker, to this
replica or another one, is stored once. A sample submitted with ``on_stored`` has it called
after the transaction that stored it committed (the MQTT ingest acknowledges the message
then); when the write fails it is not called, and ``write_failed_listeners`` hear it (the
ingest reconnects so the broker redelivers what it did not get acknowledged).

For the rollout engine: `cohort_metrics(device_ids, since_ms, until_ms)` and
`device_variant(device_id)`. Accuracy figures take the agent's telemetry (its offload and
audit agreement counts) as the single source of truth; the controller's own pair counts
(OffloadPairs) are a cross-check only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.monitoring.estimate import AccuracyEstimate, estimate_accuracy
from controller.services.accuracy_inputs import AccuracyInputs, window_counts
from controller.services.telemetry_math import (
    ReportSample,
    Totals,
    agreement,
    percentile,
    ratio,
)
from controller.services.telemetry_rows import add_row, fold, report_values, zero_rollup
from controller.store.db import Database, delete_in_batches
from controller.store.models_telemetry import REPORT_KEY, TelemetryReportRow, TelemetryRollupRow

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
PRUNE_GROUPS = 2000  # (device, minute, variant) groups one prune pass reads
OnStored = Callable[[], None]  # called once the report's transaction committed


@dataclass(frozen=True)
class TelemetryStoreConfig:
    queue_size: int = 10_000
    batch_size: int = 500
    flush_interval_s: float = 0.25
    raw_retention_s: float = 3600.0  # raw reports, then one-minute rollups
    rollup_retention_s: float = 7 * 86400.0
    prune_interval_s: float = 60.0


@dataclass(frozen=True)
class CohortMetrics:
    """Metrics over a set of devices and a time window (None where there is no data)."""

    frames: int
    devices_reporting: int
    reports: int
    frames_per_s: float | None
    p50_latency_ms: float | None  # end to end, from merged histograms
    p95_latency_ms: float | None
    local_p50_ms: float | None
    local_p95_ms: float | None
    agreement: float | None  # edge vs cloud over offloaded + audit pairs
    agreement_pairs: int
    # the final answers' accuracy with its 95% interval (controller.monitoring.estimate)
    accuracy: AccuracyEstimate
    error_rate: float | None  # (bad frames + the device's own errors) per frame
    offload_rate: float | None
    offload_failure_rate: float | None  # failed offloads per offloaded frame
    skipped: int
    bad_frames: int
    reports_dropped: int
    audit_skipped_busy: int = 0  # audits not sent: every offload slot was busy


# Errors the device made itself. Failed offloads are the cloud's and have their own rate
# (offload_failure_rate); bad input frames are counted once, through bad_frames.
_NOT_DEVICE_ERRORS = ("offload_", "audit_", "bad_frame")


def is_device_error(kind: str) -> bool:
    return not kind.startswith(_NOT_DEVICE_ERRORS)


def metrics_of(
    totals: Totals, devices_reporting: int, accuracy: AccuracyEstimate | None = None
) -> CohortMetrics:
    """Metrics of summed reports; ``accuracy`` None: estimated without a cloud table."""
    span_s = (totals.last_end_ms - totals.first_start_ms) / 1000.0
    agree, pairs = agreement(totals)
    error_count = totals.bad_frames + sum(
        n for kind, n in totals.errors.items() if is_device_error(kind)
    )
    return CohortMetrics(
        frames=totals.frames,
        devices_reporting=devices_reporting,
        reports=totals.reports,
        frames_per_s=(totals.frames / span_s / max(1, devices_reporting)) if span_s > 0 else None,
        p50_latency_ms=percentile(totals.latency, 0.50),
        p95_latency_ms=percentile(totals.latency, 0.95),
        local_p50_ms=percentile(totals.local_latency, 0.50),
        local_p95_ms=percentile(totals.local_latency, 0.95),
        agreement=agree,
        agreement_pairs=pairs,
        accuracy=accuracy or estimate_accuracy(window_counts(totals), None),
        error_rate=ratio(error_count, totals.frames + totals.bad_frames),
        offload_rate=ratio(totals.offloaded, totals.frames),
        offload_failure_rate=ratio(totals.offload_failures, totals.offloaded),
        skipped=totals.skipped,
        bad_frames=totals.bad_frames,
        reports_dropped=totals.reports_dropped,
        audit_skipped_busy=totals.audit_skipped_busy,
    )


@dataclass
class StoreStats:
    received: int = 0
    written: int = 0
    dropped_queue_full: int = 0
    write_errors: int = 0  # reports the database refused (each logged with its device)
    duplicates: int = 0
    rollup_errors: int = 0  # (device, minute, variant) groups a prune could not fold


@dataclass
class DeviceLatest:
    """The newest report of a device and when it arrived."""

    sample: ReportSample
    received_ms: int
    sequences: list[int] = field(default_factory=list)  # recent sequence numbers, bounded


class TelemetryStore:
    _SEQUENCES_KEPT = 10_000
    _SEEN_KEPT = 256

    def __init__(
        self,
        db: Database,
        config: TelemetryStoreConfig | None = None,
        clock: Callable[[], float] = time.time,
        accuracy: AccuracyInputs | None = None,
    ) -> None:
        self.db = db
        self.accuracy = accuracy or AccuracyInputs(db, clock=clock)
        self.config = config or TelemetryStoreConfig()
        self._clock = clock
        self.stats = StoreStats()
        self._queue: queue.Queue[tuple[ReportSample, OnStored | None]] = queue.Queue(
            self.config.queue_size
        )
        self._latest: dict[str, DeviceLatest] = {}
        self._seen: dict[str, deque[tuple[int, int]]] = {}
        # queued, not yet written: a redelivery arriving meanwhile is acknowledged with it
        self._pending: dict[tuple[str, int, int], list[OnStored]] = {}
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = time.monotonic()
        self._prune_lock = threading.Lock()  # one prune at a time (writer's or a caller's)
        self.prune_gate: Callable[[], bool] = lambda: True  # the writer prunes only while True
        # told of each batch the database refused (its samples were not acknowledged)
        self.write_failed_listeners: list[Callable[[int], None]] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="telemetry-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- ingest ---------------------------------------------------------------------------------
    def submit(self, sample: ReportSample, on_stored: OnStored | None = None) -> bool:
        """Queue a validated sample (never blocks); False when the queue is full (then
        ``on_stored`` is not called)."""
        now = self._now_ms()
        with self._lock:
            seen = self._seen.setdefault(sample.device_id, deque(maxlen=self._SEEN_KEPT))
            if (sample.sequence, sample.start_ms) in seen:  # re-sent after a lost ack
                self.stats.duplicates += 1
                waiting = self._pending.get(_key(sample))
                if waiting is not None and on_stored is not None:
                    waiting.append(on_stored)  # acknowledged when the first copy is stored
                elif on_stored is not None:
                    _call(on_stored)
                return True
            self._pending[_key(sample)] = []
            seen.append((sample.sequence, sample.start_ms))
            self.stats.received += 1
            entry = self._latest.get(sample.device_id)
            seqs = entry.sequences if entry is not None else []
            seqs.append(sample.sequence)
            del seqs[: max(0, len(seqs) - self._SEQUENCES_KEPT)]
            if entry is None or sample.end_ms >= entry.sample.end_ms:
                self._latest[sample.device_id] = DeviceLatest(sample, now, seqs)
            else:
                entry.sequences = seqs
        try:
            self._queue.put_nowait((sample, on_stored))
            return True
        except queue.Full:
            with self._lock:
                self.stats.dropped_queue_full += 1
                self._forget(sample)
                self._pending.pop(_key(sample), None)
            log.warning("telemetry queue full: dropped a report of device=%s", sample.device_id)
            return False

    def submit_from(
        self, device_id: str, sample: ReportSample, on_stored: OnStored | None = None
    ) -> None:
        """The MQTT ingest's sink method (the ingest checked the device id against the topic)."""
        self.submit(sample, on_stored)

    def _forget(self, sample: ReportSample) -> None:
        """(under the lock) A redelivery of an unstored sample must be queued again."""
        seen = self._seen.get(sample.device_id)
        if seen is not None and (sample.sequence, sample.start_ms) in seen:
            seen.remove((sample.sequence, sample.start_ms))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._written:
            target = self.stats.received - self.stats.dropped_queue_full
            while self.stats.written + self.stats.write_errors < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._written.wait(remaining):
                    return False
            return True

    def _writer(self) -> None:
        cfg = self.config
        while not self._stop.is_set() or not self._queue.empty():
            batch: list[tuple[ReportSample, OnStored | None]] = []
            try:
                batch.append(self._queue.get(timeout=cfg.flush_interval_s))
                while len(batch) < cfg.batch_size:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if batch:
                self._write_acked(batch)
            if time.monotonic() - self._last_prune >= cfg.prune_interval_s and self.prune_gate():
                self._last_prune = time.monotonic()
                try:
                    self.prune()
                except Exception:
                    log.exception("telemetry prune failed")

    def _write(self, samples: Sequence[ReportSample]) -> None:
        self._write_acked([(sample, None) for sample in samples])

    def _write_acked(self, batch: Sequence[tuple[ReportSample, OnStored | None]]) -> None:
        """One transaction for the batch; if the database refuses it, one per report, so a
        report it refuses costs no other report (the decode's range checks make that rare).
        Each stored sample's ``on_stored`` runs after its commit; a refused one's never."""
        samples = [sample for sample, _ in batch]
        stored: list[tuple[ReportSample, OnStored | None]] = []
        failed: list[ReportSample] = []
        if self._insert(samples):
            stored = list(batch)
        else:
            for sample, on_stored in batch:
                if self._insert([sample]):
                    stored.append((sample, on_stored))
                else:
                    failed.append(sample)
                    log.error(
                        "telemetry report of device=%s seq=%d refused by the database",
                        sample.device_id, sample.sequence,
                    )  # fmt: skip
        with self._written:
            for sample in failed:
                self._forget(sample)
                self._pending.pop(_key(sample), None)  # redeliveries waiting stay unacknowledged
            callbacks = [
                callback
                for sample, on_stored in stored
                for callback in [
                    *([on_stored] if on_stored is not None else []),
                    *self._pending.pop(_key(sample), []),
                ]
            ]
        for callback in callbacks:
            _call(callback)
        with self._written:
            self.stats.written += len(stored)
            self.stats.write_errors += len(failed)
            self._written.notify_all()
        if failed:
            for listener in self.write_failed_listeners:
                _call(partial(listener, len(failed)))

    def _insert(self, samples: Sequence[ReportSample]) -> int:
        """Insert, ignoring reports already stored (the unique report key)."""
        try:
            with self.db.session() as s:
                dialect = s.get_bind().dialect.name
                insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
                statement = insert(TelemetryReportRow).on_conflict_do_nothing(
                    index_elements=list(REPORT_KEY)
                )
                s.execute(statement, [report_values(sample) for sample in samples])
            return len(samples)
        except Exception:  # the writer must outlive a database hiccup and a bad row
            log.warning("telemetry write of %d reports failed", len(samples), exc_info=True)
            return 0

    # -- retention ------------------------------------------------------------------------------
    def prune(self, now_ms: int | None = None) -> tuple[int, int]:
        """Fold old raw reports into minute rollups; drop expired rollups. Returns the counts."""
        with self._prune_lock:
            return self._prune(self._now_ms() if now_ms is None else now_ms)

    def _prune(self, now_ms: int) -> tuple[int, int]:
        """Each (device, minute, variant) group is folded and its raw reports deleted in its
        own transaction: a group that fails is logged and kept, the others are not held up."""
        raw_cutoff = now_ms - int(self.config.raw_retention_s * 1000)
        rollup_cutoff = now_ms - int(self.config.rollup_retention_s * 1000)
        minute = TelemetryReportRow.end_ms - TelemetryReportRow.end_ms % MINUTE_MS
        rolled = 0
        while True:  # PRUNE_GROUPS at a time: never every expired group in memory at once
            with self.db.session() as s:
                groups = s.execute(
                    select(TelemetryReportRow.device_id, minute, TelemetryReportRow.variant_id)
                    .where(TelemetryReportRow.end_ms < raw_cutoff)
                    .distinct()
                    .limit(PRUNE_GROUPS)
                ).all()
            folded = 0
            for device_id, minute_ms, variant_id in groups:
                try:
                    folded += self._roll_up(device_id, int(minute_ms), variant_id, raw_cutoff)
                except Exception:
                    self.stats.rollup_errors += 1
                    log.exception(
                        "telemetry rollup of device=%s minute=%d variant=%s failed",
                        device_id, minute_ms, variant_id,
                    )  # fmt: skip
            rolled += folded
            if len(groups) < PRUNE_GROUPS or not folded:  # done, or only failing groups left
                break
        r = TelemetryRollupRow
        removed = delete_in_batches(
            self.db, (r.device_id, r.minute_ms, r.variant_id), r.minute_ms < rollup_cutoff
        )
        if rolled or removed:
            log.info("telemetry prune: %d reports rolled up, %d rollups expired", rolled, removed)
        return rolled, removed

    def _roll_up(self, device_id: str, minute_ms: int, variant_id: str, cutoff_ms: int) -> int:
        r = TelemetryReportRow
        with self.db.session() as s:
            rows = s.scalars(
                select(r).where(
                    r.device_id == device_id,
                    r.variant_id == variant_id,
                    r.end_ms >= minute_ms,
                    r.end_ms < min(minute_ms + MINUTE_MS, cutoff_ms),
                )
            ).all()
            if not rows:
                return 0
            rollup = s.get(TelemetryRollupRow, (device_id, minute_ms, variant_id))
            if rollup is None:
                rollup = TelemetryRollupRow(
                    device_id=device_id, minute_ms=minute_ms, variant_id=variant_id
                )
                zero_rollup(rollup)
                s.add(rollup)
            fold(rollup, rows)
            s.execute(delete(r).where(r.id.in_([row.id for row in rows])))
            return len(rows)

    # -- queries --------------------------------------------------------------------------------
    def device_totals(
        self, since_ms: int, until_ms: int | None = None, device_ids: Sequence[str] | None = None
    ) -> dict[str, Totals]:
        """Per-device sums of every report (raw or rolled up) that ended in (since, until]."""
        out: dict[str, Totals] = {}
        for device_id, per_variant in self.device_variant_totals(
            since_ms, until_ms, device_ids
        ).items():
            total = out.setdefault(device_id, Totals())
            for t in per_variant.values():
                total.merge(t)
        return out

    def device_variant_totals(
        self, since_ms: int, until_ms: int | None = None, device_ids: Sequence[str] | None = None
    ) -> dict[str, dict[str, Totals]]:
        """device -> variant -> sums, like ``device_totals`` (the estimate is per variant)."""
        until_ms = self._now_ms() + 1 if until_ms is None else until_ms
        out: dict[str, dict[str, Totals]] = {}
        with self.db.session() as s:
            raw = select(TelemetryReportRow).where(
                TelemetryReportRow.end_ms > since_ms, TelemetryReportRow.end_ms <= until_ms
            )
            roll = select(TelemetryRollupRow).where(
                TelemetryRollupRow.minute_ms + MINUTE_MS > since_ms,
                TelemetryRollupRow.minute_ms <= until_ms,
            )
            if device_ids is not None:
                raw = raw.where(TelemetryReportRow.device_id.in_(list(device_ids)))
                roll = roll.where(TelemetryRollupRow.device_id.in_(list(device_ids)))
            for row in s.scalars(raw):
                add_row(out.setdefault(row.device_id, {}).setdefault(row.variant_id, Totals()),
                        row, 1)  # fmt: skip
            for rollup in s.scalars(roll):
                per_variant = out.setdefault(rollup.device_id, {})
                add_row(per_variant.setdefault(rollup.variant_id, Totals()), rollup, rollup.reports)
        return out

    def accuracy_of(self, per_variant: dict[str, Totals]) -> AccuracyEstimate:
        """The estimate over a device's (or cohort's) sums per variant, with each variant's
        cloud table and the operator labels: what ``fleet status`` shows."""
        return self.accuracy.estimate(per_variant)

    def device_metrics(
        self, since_ms: int, until_ms: int | None = None, device_ids: Sequence[str] | None = None
    ) -> dict[str, CohortMetrics]:
        """Per-device metrics over (since, until], the accuracy estimated per variant (the
        same numbers as ``fleet status``; ``metrics_of`` alone has no cloud table)."""
        out = {}
        for device_id, per_variant in self.device_variant_totals(
            since_ms, until_ms, device_ids
        ).items():
            total = Totals.of(per_variant.values())
            out[device_id] = metrics_of(
                total, 1 if total.reports else 0, self.accuracy_of(per_variant)
            )
        return out

    def cohort_metrics(
        self, device_ids: Sequence[str], since_ms: int, until_ms: int | None = None
    ) -> CohortMetrics:
        """Merged metrics of `device_ids` over reports that ended in (since_ms, until_ms]."""
        per_device = self.device_variant_totals(since_ms, until_ms, device_ids)
        total = Totals()
        by_variant: dict[str, Totals] = {}
        reporting = 0
        for per_variant in per_device.values():
            reporting += any(t.reports for t in per_variant.values())
            for variant_id, t in per_variant.items():
                total.merge(t)
                by_variant.setdefault(variant_id, Totals()).merge(t)
        return metrics_of(total, reporting, self.accuracy_of(by_variant))

    def device_variant(self, device_id: str) -> str | None:
        """The variant id of the device's newest report (None: no report since start)."""
        with self._lock:
            entry = self._latest.get(device_id)
            return entry.sample.variant_id if entry is not None else None

    def latest(self) -> dict[str, DeviceLatest]:
        with self._lock:
            return dict(self._latest)

    def sequences(self, device_id: str) -> list[int]:
        """Sequence numbers received from a device since start, in arrival order."""
        with self._lock:
            entry = self._latest.get(device_id)
            return list(entry.sequences) if entry is not None else []


def _key(sample: ReportSample) -> tuple[str, int, int]:
    return sample.device_id, sample.sequence, sample.start_ms


def _call(callback: Callable[[], object]) -> None:
    try:
        callback()
    except Exception:  # an acknowledgement or listener must not stop the writer
        log.exception("telemetry store callback failed")
