"""Telemetry rows: a ReportSample as a raw report row, rows summed into Totals, and raw rows
folded into a minute rollup, every counter by its declared name (edgefleet.telemetry_fields).
Rollup sums saturate at the columns' 64-bit bound instead of failing the write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.services.telemetry_math import INF, ReportSample, Totals
from controller.store.models_telemetry import TelemetryReportRow, TelemetryRollupRow
from edgefleet.telemetry_fields import COUNTER_NAMES, INT64_MAX


def hist_to_json(buckets: Mapping[float, int]) -> list[list[float | int | None]]:
    # Zero-count keys are kept: they mark the lower bounds of the buckets that have counts.
    return [[None if b == INF else b, int(n)] for b, n in sorted(buckets.items())]


def hist_from_json(data: object) -> dict[float, int]:
    out: dict[float, int] = {}
    for bound, count in data or []:  # type: ignore[attr-defined]
        key = INF if bound is None else float(bound)
        out[key] = out.get(key, 0) + int(count)
    return out


def report_values(s: ReportSample) -> dict[str, object]:
    """A report's column values (``telemetry_reports`` by column name)."""
    return {
        "device_id": s.device_id,
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "received_ms": s.received_ms,
        "model": s.model,
        "variant_id": s.variant_id,
        "sequence": s.sequence,
        "rss_bytes": s.rss_bytes,
        "cpu_percent": s.cpu_percent,
        "latency": hist_to_json(s.latency),
        "local_latency": hist_to_json(s.local_latency),
        "confidence": hist_to_json(s.confidence),
        "errors": dict(s.errors),
        **{n: s.count(n) for n in COUNTER_NAMES},
    }


def report_row(s: ReportSample) -> TelemetryReportRow:
    return TelemetryReportRow(**report_values(s))


def add_row(t: Totals, row: TelemetryReportRow | TelemetryRollupRow, reports: int) -> None:
    counts = {n: getattr(row, n) for n in COUNTER_NAMES}
    counts["reports"] = reports
    t.add_counts(
        counts,
        row.start_ms,
        row.end_ms,
        hist_from_json(row.latency),
        hist_from_json(row.local_latency),
        dict(row.errors or {}),
        hist_from_json(row.confidence),
    )


def zero_rollup(rollup: TelemetryRollupRow) -> None:
    for n in COUNTER_NAMES:
        setattr(rollup, n, 0)
    rollup.reports = rollup.start_ms = rollup.end_ms = 0
    rollup.latency, rollup.local_latency, rollup.confidence, rollup.errors = [], [], [], {}


def _capped(n: int) -> int:
    """A sum as a 64-bit column holds it (saturating, never overflowing the write)."""
    return min(INT64_MAX, int(n))


def fold(rollup: TelemetryRollupRow, rows: Sequence[TelemetryReportRow]) -> None:
    t = Totals()
    add_row(t, rollup, rollup.reports)
    for row in rows:
        add_row(t, row, 1)
    for n in COUNTER_NAMES:
        setattr(rollup, n, _capped(getattr(t, n)))
    rollup.reports = _capped(t.reports)
    rollup.start_ms, rollup.end_ms = t.first_start_ms, t.last_end_ms
    rollup.latency = hist_to_json({b: _capped(c) for b, c in t.latency.items()})
    rollup.local_latency = hist_to_json({b: _capped(c) for b, c in t.local_latency.items()})
    rollup.confidence = hist_to_json({b: _capped(c) for b, c in t.confidence.items()})
    rollup.errors = {k: _capped(v) for k, v in t.errors.items()}
