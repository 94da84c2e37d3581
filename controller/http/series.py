"""Time series of one device's telemetry for the dashboard's plots.

Reads the telemetry rows (raw reports and one-minute rollups) of a device over a time range,
sums them into equal time buckets and derives each bucket's metrics with the same arithmetic
the CLI and the rollout gates use (``metrics_of``), so a plotted point and ``fleet status``
agree on what a number means. Also the page's summary over the whole range and its
confidence histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from controller.monitoring.estimate import AccuracyEstimate
from controller.services.telemetry import MINUTE_MS, CohortMetrics, metrics_of
from controller.services.telemetry_math import Totals
from controller.services.telemetry_rows import add_row
from controller.store.db import Database
from controller.store.models_telemetry import TelemetryReportRow, TelemetryRollupRow

MAX_BUCKETS = 240


@dataclass(frozen=True)
class SeriesPoint:
    start_ms: int
    end_ms: int
    metrics: CohortMetrics
    totals: Totals


@dataclass(frozen=True)
class DeviceSeries:
    device_id: str
    since_ms: int
    until_ms: int
    points: tuple[SeriesPoint, ...]  # buckets with at least one report, oldest first
    overall: CohortMetrics
    confidence: dict[float, int]  # {upper bound: frames} over the whole range


def device_series(
    db: Database,
    device_id: str,
    since_ms: int,
    until_ms: int,
    buckets: int = 60,
    accuracy: Callable[[dict[str, Totals]], AccuracyEstimate] | None = None,
) -> DeviceSeries:
    """``buckets`` equal slices of (since_ms, until_ms]; a report falls in the slice its end
    time is in (a rollup: the slice its minute starts in). ``accuracy`` estimates a slice's
    accuracy from its per-variant sums (TelemetryStore.accuracy_of, what `fleet status` shows);
    without it, the table-free estimate of ``metrics_of``."""
    buckets = max(1, min(MAX_BUCKETS, buckets))
    span = max(1, until_ms - since_ms)
    width = -(-span // buckets)
    sums: dict[int, dict[str, Totals]] = {}  # slice -> variant -> sums
    overall: dict[str, Totals] = {}

    def bucket(at_ms: int, variant_id: str) -> Totals:
        index = min(buckets - 1, max(0, (at_ms - since_ms - 1) // width))
        return sums.setdefault(index, {}).setdefault(variant_id, Totals())

    r, u = TelemetryReportRow, TelemetryRollupRow
    with db.session() as s:
        raw = s.scalars(
            select(r).where(r.device_id == device_id, r.end_ms > since_ms, r.end_ms <= until_ms)
        )
        for row in raw:
            add_row(bucket(int(row.end_ms), row.variant_id), row, 1)
            add_row(overall.setdefault(row.variant_id, Totals()), row, 1)
        rolled = s.scalars(
            select(u).where(
                u.device_id == device_id,
                u.minute_ms + MINUTE_MS > since_ms,
                u.minute_ms <= until_ms,
            )
        )
        for rollup in rolled:
            add_row(bucket(int(rollup.minute_ms) + 1, rollup.variant_id), rollup, rollup.reports)
            add_row(overall.setdefault(rollup.variant_id, Totals()), rollup, rollup.reports)

    def summed(per_variant: dict[str, Totals]) -> tuple[Totals, CohortMetrics]:
        t = Totals.of(per_variant.values())
        estimate = accuracy(per_variant) if accuracy is not None and t.frames else None
        return t, metrics_of(t, 1 if t.reports else 0, estimate)

    points = []
    for i, per_variant in sorted(sums.items()):
        t, m = summed(per_variant)
        points.append(SeriesPoint(since_ms + i * width, since_ms + (i + 1) * width, m, t))
    total, metrics = summed(overall)
    return DeviceSeries(device_id, since_ms, until_ms, tuple(points), metrics,
                        dict(total.confidence))  # fmt: skip


def window_ms(text: str, allowed: Sequence[str]) -> int:
    """``10m`` -> 600000 for one of the allowed window names (ValueError otherwise)."""
    if text not in allowed:
        raise ValueError(f"window must be one of {', '.join(allowed)}")
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    return int(text[:-1]) * units[text[-1]]
