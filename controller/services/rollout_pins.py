"""The variants a rollout pinned per profile when it started.

``rollout start MODEL:VERSION`` means the files that version recommended at that moment:
the rollout stores them (variant id, TUF target path, sha256, size, metadata) and every later
step, device that joins and desired state uses the stored values, never a fresh lookup, so
device benchmarks or anything else that happens to the model afterwards cannot change what
the rollout installs. Rollouts created before pinning existed have no rows (``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controller.store.db import Database
from controller.store.models_rollouts import RolloutVariantRow


@dataclass(frozen=True)
class PinnedVariant:
    variant_id: str
    target_path: str
    sha256: str
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)


class RolloutPins:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, rollout_id: str, variants: Mapping[str, Any | None]) -> None:
        """``variants``: profile -> a selected variant (``SelectedVariant``-like) or None."""
        with self._db.session() as s:
            for profile, v in sorted(variants.items()):
                row = RolloutVariantRow(rollout_id=rollout_id, profile=profile, variant_id="",
                                        target_path="", sha256="", size=0,
                                        variant_metadata={})  # fmt: skip
                if v is not None:
                    meta = v.metadata
                    row.variant_id, row.target_path = v.variant_id, v.target_path
                    row.sha256, row.size = v.sha256, int(v.size)
                    row.variant_metadata = (
                        meta.to_dict() if hasattr(meta, "to_dict") else dict(meta or {})
                    )
                s.add(row)

    def load(self, rollout_id: str) -> dict[str, PinnedVariant | None] | None:
        """profile -> pinned variant (None: nothing fitted that profile); None: not pinned."""
        with self._db.session() as s:
            rows = s.scalars(
                select(RolloutVariantRow).where(RolloutVariantRow.rollout_id == rollout_id)
            ).all()
            if not rows:
                return None
            return {
                r.profile: (
                    PinnedVariant(
                        r.variant_id,
                        r.target_path,
                        r.sha256,
                        int(r.size),
                        dict(r.variant_metadata or {}),
                    )
                    if r.variant_id
                    else None
                )
                for r in rows
            }
