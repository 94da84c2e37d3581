"""SQLAlchemy models of rollouts, their events and per-device desired state (migration 0004)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class RolloutRow(Base):
    __tablename__ = "rollouts"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class RolloutEventRow(Base):
    __tablename__ = "rollout_events"

    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(String(32), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class DesiredStateRow(Base):
    """What each device should run, and what it last said about it."""

    __tablename__ = "device_desired_state"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), default="")
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    variant_id: Mapped[str] = mapped_column(String(256), default="")
    target_path: Mapped[str] = mapped_column(String(512), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    length: Mapped[int] = mapped_column(BigInteger, default=0)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rollout_id: Mapped[str] = mapped_column(String(32), default="")
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    reported_state: Mapped[str] = mapped_column(String(16), default="")
    reported_variant: Mapped[str] = mapped_column(String(256), default="")
    reported_reason: Mapped[str] = mapped_column(Text, default="")
    running_variant: Mapped[str] = mapped_column(String(256), default="")
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class RolloutVariantRow(Base):
    """The variant a rollout installs on a profile, pinned when it started (migration 0006):
    whatever later happens to the model, the rollout installs exactly these files."""

    __tablename__ = "rollout_variants"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(320), default="")  # "" = nothing fits
    target_path: Mapped[str] = mapped_column(String(512), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    variant_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
