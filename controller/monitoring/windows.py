"""Telemetry sums over a window per (device, variant): a device's drift is scored only over
the reports of the variant it runs now, against that variant's baseline. A rollout or a
rollback inside the window would otherwise mix two models' confidence histograms and read as
a shift (a device back on its old variant scored PSI 17 that way)."""

from __future__ import annotations

from sqlalchemy import select

from controller.services.telemetry import MINUTE_MS
from controller.services.telemetry_math import Totals
from controller.services.telemetry_rows import add_row
from controller.store.db import Database
from controller.store.models_telemetry import TelemetryReportRow, TelemetryRollupRow

VariantTotals = dict[tuple[str, str], Totals]  # (device id, variant id) -> sums


def variant_totals(db: Database, since_ms: int, until_ms: int) -> VariantTotals:
    """Sums of every report (raw or rolled up) that ended in (since, until], per device and
    variant (the same rows TelemetryStore.device_totals reads)."""
    out: VariantTotals = {}
    raw, roll = TelemetryReportRow, TelemetryRollupRow
    with db.session() as s:
        for row in s.scalars(select(raw).where(raw.end_ms > since_ms, raw.end_ms <= until_ms)):
            add_row(out.setdefault((row.device_id, row.variant_id), Totals()), row, 1)
        rollups = select(roll).where(
            roll.minute_ms + MINUTE_MS > since_ms, roll.minute_ms <= until_ms
        )
        for rollup in s.scalars(rollups):
            key = (rollup.device_id, rollup.variant_id)
            add_row(out.setdefault(key, Totals()), rollup, rollup.reports)
    return out


def per_device(totals: VariantTotals) -> dict[str, Totals]:
    """Every variant of a device merged (what alert rules other than drift read)."""
    out: dict[str, Totals] = {}
    for (device_id, _), t in totals.items():
        out.setdefault(device_id, Totals()).merge(t)
    return out
