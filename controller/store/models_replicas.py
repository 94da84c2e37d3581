"""SQLAlchemy model of the leader lease the controller replicas share (migration 0011)."""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.models import Base


class LeaseRow(Base):
    """One row per singleton lease: who holds it, its fencing epoch, when it runs out (ms of
    the database clock). Written only by controller.services.leadership."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    renewed_ms: Mapped[int] = mapped_column(BigInteger)
