"""The edge-confidence histogram is kept end to end: decode (snapped onto CONFIDENCE_BOUNDS),
raw rows, minute rollups and Totals, on SQLite and PostgreSQL."""

from __future__ import annotations

from controller.mqtt.telemetry_decode import sample_from_report
from controller.services.telemetry import TelemetryStore, TelemetryStoreConfig
from controller.services.telemetry_math import INF
from controller.store.db import Database
from edgefleet.histograms import CONFIDENCE_BOUNDS
from edgefleet.v1 import report_pb2

HOUR_MS = 3_600_000


def report(
    seq: int, end_ms: int, bounds: list[float], counts: list[int]
) -> report_pb2.TelemetryReport:
    return report_pb2.TelemetryReport(
        device_id="cam-1",
        interval_start_unix_ms=end_ms - 10_000,
        interval_end_unix_ms=end_ms,
        model="fashion-edge",
        variant_id="fashion-edge:1:fp32",
        sequence=seq,
        frames=sum(counts),
        confidence=report_pb2.Histogram(
            bounds=bounds, counts=counts, count=sum(counts), sum=0.5 * sum(counts)
        ),
    )


def test_confidence_histogram_is_decoded_stored_and_rolled_up(db: Database) -> None:
    now = 10 * HOUR_MS
    ladder = list(CONFIDENCE_BOUNDS)
    native = [0] * (len(ladder) + 1)
    native[-1], native[9] = 30, 10  # 30 frames above 0.95, 10 in (0.45, 0.5]
    old = sample_from_report(report(1, now - 2 * HOUR_MS, ladder, native), "cam-1", now)
    assert old.confidence[0.95] == 0 and old.confidence[INF] == 30  # 0.95 marks a lower bound
    # an agent with other bounds: snapped onto the ladder, so the stored keys stay bounded
    odd = sample_from_report(
        report(2, now - 2 * HOUR_MS + 5000, [0.33, 0.97], [4, 5, 6]), "cam-1", now
    )
    assert set(odd.confidence) <= {*CONFIDENCE_BOUNDS, float("inf")}
    recent = sample_from_report(report(3, now - 1000, ladder, native), "cam-1", now)

    store = TelemetryStore(db, TelemetryStoreConfig(), clock=lambda: now / 1000)
    store._write([old, odd, recent])
    assert store.stats.written == 3
    before = store.device_totals(0, now)["cam-1"].confidence
    assert sum(before.values()) == 40 + 15 + 40
    assert store.prune() == (2, 0)  # the two old reports fold into one minute rollup
    after = store.device_totals(0, now)["cam-1"].confidence
    assert after == before
    window = store.device_totals(now - HOUR_MS, now)["cam-1"].confidence
    assert sum(window.values()) == 40 and window[0.5] == 10
