"""Rows a build writes and the signed targets derived from them, shared by the catalogue,
the build runner and device benchmarks (so none of them imports another for these).

A version's signed targets are one per (profile, candidate variant), each carrying the
variant's metadata and the profile it is signed for: exactly what a device installs. Which
candidate is *recommended* (the selection device benchmarks can move) is not signed — a
rollout names the target it installs — so the targets never change after the build.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from controller.optimize.pipeline import BUILT
from controller.optimize.select import Selection
from controller.services.model_views import candidates_of
from controller.services.releases import StagedTarget
from controller.signing import target_path
from controller.store.models_models import ModelRow, SelectionRow, VariantRow


def now_ms() -> int:
    return int(time.time() * 1000)


def variant_target(model: str, version: int, variant: str, profile: str, file: str) -> str:
    """One target per (profile, variant): ``models/{model}/{version}/{variant}+{profile}/{file}``
    (a variant several profiles can run is listed once per profile)."""
    return target_path(model, version, f"{variant}+{profile}", file)


def release_prefix(model: str, version: int) -> str:
    """Every signed target of ``model:version`` starts with this."""
    return f"models/{model}/{version}/"


def built_count(s: Any, model_id: int) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(VariantRow)
            .where(VariantRow.model_id == model_id, VariantRow.status == BUILT)
        )
        or 0
    )


def staged_targets(s: Any, row: ModelRow) -> list[StagedTarget]:
    """Every (profile, candidate variant) target of a model version, from the database."""
    targets = []
    for sel in s.scalars(select(SelectionRow).where(SelectionRow.model_id == row.id)):
        for kind in sel.candidates:
            v = s.get(VariantRow, f"{row.name}:{row.version}:{kind}")
            if v is None or v.status != BUILT:
                continue
            targets.append(
                StagedTarget(
                    variant_target(row.name, row.version, kind, sel.profile, v.file),
                    v.artifact_sha256,
                    v.size_bytes,
                    {**dict(v.variant_metadata), "profile": sel.profile},
                )
            )
    return targets


def write_selection(
    s: Any, row: ModelRow, profile: str, sel: Selection, candidates: list[str] | None = None
) -> None:
    """Insert or replace one profile's selection (``candidates`` default: the selection's)."""
    s.merge(
        SelectionRow(
            model_id=row.id,
            profile=profile,
            variant_id=f"{row.name}:{row.version}:{sel.variant}" if sel.variant else "",
            latency_ms=sel.latency_ms,
            latency_source=sel.latency_source if sel.variant else "",
            rejected=dict(sel.rejected),
            candidates=candidates if candidates is not None else candidates_of(sel),
            updated_ms=now_ms(),
        )
    )
