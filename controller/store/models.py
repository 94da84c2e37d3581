"""SQLAlchemy models of the registry. The schema itself is owned by Alembic migrations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class DeviceRow(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    requested_profile: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="registered")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    enrolled_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    revoked_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("devices.device_id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
