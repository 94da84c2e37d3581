"""Operator-labelled frames (schema owned by migration 0009_labels_and_busy_audits)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class FrameLabelRow(Base):
    __tablename__ = "frame_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    frame_key: Mapped[str] = mapped_column(String(600), unique=True)  # device/frame id
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str] = mapped_column(String(128), index=True)  # the edge model's name
    edge_variant_id: Mapped[str] = mapped_column(String(256), default="")
    frame_id: Mapped[str] = mapped_column(String(256), default="")
    seen_ms: Mapped[int] = mapped_column(BigInteger)  # when the cloud answered it
    edge_label: Mapped[int] = mapped_column(Integer)
    edge_confidence: Mapped[float] = mapped_column(Float)
    cloud_label: Mapped[int] = mapped_column(Integer)
    cloud_confidence: Mapped[float] = mapped_column(Float)
    audit: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[int] = mapped_column(Integer)  # the true class, from the operator
    labelled_ms: Mapped[int] = mapped_column(BigInteger, index=True)
