"""Registry rows of the model build pipeline: model versions, builds, variants, selections
and on-device benchmark reports. The schema is owned by migrations ``0002_models`` and
``0005_model_rebuilds``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16), default="edge")  # edge | cloud
    cloud_for: Mapped[str] = mapped_column(String(128), default="")
    source_sha256: Mapped[str] = mapped_column(String(64))
    source_size: Mapped[int] = mapped_column(BigInteger)
    input_name: Mapped[str] = mapped_column(String(256))
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    input_dtype: Mapped[str] = mapped_column(String(16))
    layout: Mapped[str] = mapped_column(String(8))
    output_name: Mapped[str] = mapped_column(String(256))
    num_classes: Mapped[int] = mapped_column(Integer)
    preprocessing: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[list[str]] = mapped_column(JSON)
    validation_sha256: Mapped[str] = mapped_column(String(64))
    calibration_sha256: Mapped[str] = mapped_column(String(64), default="")
    build_status: Mapped[str] = mapped_column(String(16), default="")  # "" | running | ...
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # 0, or the version whose sources this one was built from (`model build --rebuild`)
    rebuilt_from: Mapped[int] = mapped_column(Integer, default=0)


class BuildRow(Base):
    __tablename__ = "model_builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    profiles: Mapped[list[str]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(String(1024), default="")
    started_ms: Mapped[int] = mapped_column(BigInteger)
    finished_ms: Mapped[int] = mapped_column(BigInteger)


class VariantRow(Base):
    __tablename__ = "model_variants"

    variant_id: Mapped[str] = mapped_column(String(320), primary_key=True)
    model_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # built | skipped | failed
    reason: Mapped[str] = mapped_column(String(1024), default="")
    artifact_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    file: Mapped[str] = mapped_column(String(256), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    zstd_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    variant_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SelectionRow(Base):
    __tablename__ = "model_selections"

    model_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    profile: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(320), default="")  # "" = nothing fits
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_source: Mapped[str] = mapped_column(String(32), default="")
    rejected: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    candidates: Mapped[list[str]] = mapped_column(JSON, default=list)  # variant kinds
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class BenchmarkRow(Base):
    __tablename__ = "device_benchmarks"
    __table_args__ = (UniqueConstraint("device_id", "variant_id", name="uq_bench_device_variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    profile: Mapped[str] = mapped_column(String(64), index=True)
    variant_id: Mapped[str] = mapped_column(String(320), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    median_ms: Mapped[float] = mapped_column(Float, default=0.0)
    p95_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(String(1024), default="")
    reported_ms: Mapped[int] = mapped_column(BigInteger)
