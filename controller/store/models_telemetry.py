"""SQLAlchemy models of the telemetry time series (schema owned by migration 0003_telemetry).

Raw reports are kept for a short retention, then folded into one-minute rollups per device
and variant, which are kept longer. Histograms are JSON lists of [upper bound, count] pairs
(the overflow bucket's bound is null). The count columns are the declared telemetry
counters (edgefleet.telemetry_fields.COUNTERS), one BIGINT each, as migration 0003 made them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base
from edgefleet.telemetry_fields import COUNTER_NAMES


class _Counts:
    latency: Mapped[list[Any]] = mapped_column(JSON, default=list)
    local_latency: Mapped[list[Any]] = mapped_column(JSON, default=list)
    confidence: Mapped[list[Any]] = mapped_column(JSON, default=list)  # migration 0007
    errors: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)


for _counter in COUNTER_NAMES:  # read and written by name (getattr/setattr, row kwargs)
    setattr(_Counts, _counter, mapped_column(_counter, BigInteger, nullable=False, default=0))


# One row per report: a report redelivered (to another replica too) is ignored (migration 0011)
REPORT_KEY = ("device_id", "sequence", "start_ms")


class TelemetryReportRow(_Counts, Base):
    __tablename__ = "telemetry_reports"
    __table_args__ = (
        Index("uq_telemetry_reports_device_sequence_start", *REPORT_KEY, unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(128), default="")
    variant_id: Mapped[str] = mapped_column(String(256), default="")
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    rss_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_percent: Mapped[float] = mapped_column(Float, default=0.0)


class TelemetryRollupRow(_Counts, Base):
    __tablename__ = "telemetry_rollups"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    minute_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    reports: Mapped[int] = mapped_column(BigInteger, default=0)
    start_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    end_ms: Mapped[int] = mapped_column(BigInteger, default=0)
