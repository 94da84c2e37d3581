"""On-device benchmarks: which variants a device may measure, and what it reported.

Measurements from devices of a profile replace the controller host's latency estimate in that
profile's selection (``ModelService`` recomputes it when reports arrive). The selection is the
version's recommendation, what the next rollout of it pins: a device measurement can make
another of the version's signed candidates the selected one, but never changes the version's
variants or targets, nor what a rollout already started installs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from controller.build.pipeline import BUILT
from controller.services.model_views import BenchCandidate, BenchResult
from controller.signing import target_path
from controller.store.db import Database
from controller.store.models_models import BenchmarkRow, ModelRow, SelectionRow, VariantRow
from edgefleet.errors import InvalidInput
from edgefleet.profiles import HardwareProfile, ProfileCatalogue


def variant_target(model: str, version: int, variant: str, profile: str, file: str) -> str:
    """One target per (profile, variant): ``models/{model}/{version}/{variant}+{profile}/{file}``
    (a variant several profiles can run is listed once per profile)."""
    return target_path(model, version, f"{variant}+{profile}", file)


class DeviceBenchmarks:
    """Mixed into ModelService, whose database and profiles it uses."""

    db: Database
    profiles: ProfileCatalogue

    def reselect(self, model: str, version: int, profile: HardwareProfile) -> bool:
        """Recompute one profile's selection; True when it changed (ModelService provides it)."""
        raise NotImplementedError

    def bench_candidates(self, profile: str, model: str = "") -> list[BenchCandidate]:
        out: list[BenchCandidate] = []
        with self.db.session() as s:
            query = (
                select(SelectionRow, ModelRow).join(ModelRow).where(SelectionRow.profile == profile)
            )
            if model:
                query = query.where(ModelRow.name == model)
            for sel, mrow in s.execute(query).all():
                for kind in sel.candidates:
                    v = s.get(VariantRow, f"{mrow.name}:{mrow.version}:{kind}")
                    if v is None or v.status != BUILT:
                        continue
                    out.append(
                        BenchCandidate(
                            v.variant_id,
                            mrow.name,
                            mrow.version,
                            kind,
                            v.runtime,
                            v.precision,
                            variant_target(mrow.name, mrow.version, kind, profile, v.file),
                            v.artifact_sha256,
                            v.size_bytes,
                        )
                    )
        return out

    def record_benchmarks(
        self, device_id: str, profile: str, results: Sequence[BenchResult]
    ) -> list[str]:
        """Store a device's measurements and recompute that profile's selections; returns
        the ``model:version`` whose selection changed (a repeat report changes nothing)."""
        allowed = {c.variant_id: c for c in self.bench_candidates(profile)}
        unknown = [r.variant_id for r in results if r.variant_id not in allowed]
        if unknown:
            raise InvalidInput(f"not bench candidates of profile {profile}: {unknown}")
        now = int(time.time() * 1000)
        with self.db.session() as s:
            for r in results:
                old = s.scalars(
                    select(BenchmarkRow).where(
                        BenchmarkRow.device_id == device_id, BenchmarkRow.variant_id == r.variant_id
                    )
                ).first()
                if old is not None:
                    s.delete(old)
                    s.flush()
                s.add(
                    BenchmarkRow(
                        device_id=device_id,
                        profile=profile,
                        variant_id=r.variant_id,
                        ok=r.ok,
                        median_ms=r.median_ms,
                        p95_ms=r.p95_ms,
                        error=r.error[:1000],
                        reported_ms=now,
                    )
                )
        models = sorted({(c.model, c.version) for c in allowed.values()})
        touched = {(allowed[r.variant_id].model, allowed[r.variant_id].version) for r in results}
        done = []
        for name, version in models:
            if (name, version) in touched and self.reselect(
                name, version, self.profiles.get(profile)
            ):
                done.append(f"{name}:{version}")
        return done

    def device_latencies(self, s: Any, model: str, version: int, profile: str) -> dict[str, float]:
        """variant kind -> median over devices of ``profile`` of their reported medians."""
        import statistics

        rows = s.scalars(
            select(BenchmarkRow).where(
                BenchmarkRow.profile == profile,
                BenchmarkRow.variant_id.like(f"{model}:{version}:%"),
                BenchmarkRow.ok.is_(True),
            )
        ).all()
        by_kind: dict[str, list[float]] = {}
        for r in rows:
            by_kind.setdefault(r.variant_id.rsplit(":", 1)[-1], []).append(r.median_ms)
        return {k: float(statistics.median(v)) for k, v in by_kind.items()}
