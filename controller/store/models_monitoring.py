"""SQLAlchemy models of the fleet event log and the alerts (migration 0008_monitoring)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class FleetEventRow(Base):
    __tablename__ = "fleet_events"

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    unix_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True, default="")
    subject: Mapped[str] = mapped_column(String(256), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertRow(Base):
    __tablename__ = "fleet_alerts"

    alert_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(256))  # device id, cohort or rollout id
    device_id: Mapped[str] = mapped_column(String(128), default="")
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    message: Mapped[str] = mapped_column(Text, default="")
    started_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # when it fired
    last_evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # latest
