"""Hard-example policies and the index of stored hard frames (schema owned by migration
0010_hard_examples)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class HardExamplePolicyRow(Base):
    __tablename__ = "hard_example_policies"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)  # an edge model's name
    enabled: Mapped[bool] = mapped_column(Boolean)
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    retention_s: Mapped[int] = mapped_column(BigInteger)  # 0 = kept until the cap drops them
    device_ids: Mapped[list[str]] = mapped_column(JSON)
    device_labels: Mapped[dict[str, str]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class HardExampleRow(Base):
    __tablename__ = "hard_examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    stored_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the frame's npz, artifact store
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    frame_id: Mapped[str] = mapped_column(String(256), default="")
    edge_variant_id: Mapped[str] = mapped_column(String(256), default="")
    cloud_label: Mapped[int] = mapped_column(Integer)
    cloud_confidence: Mapped[float] = mapped_column(Float)
    edge_label: Mapped[int] = mapped_column(Integer)  # -1: the request did not say
    edge_confidence: Mapped[float] = mapped_column(Float)  # -1.0: the request did not say
