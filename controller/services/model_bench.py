"""On-device benchmarks: which variants a device may measure, and what it reported.

Measurements from devices of a profile replace the controller host's latency estimate in that
profile's selection. The selection is the version's recommendation, what the next rollout of
it pins: a device measurement can make another of the version's signed candidates the
selected one, but never changes the version's variants or signed targets (the
recommendation is not signed: ``model_records``), nor what a rollout already started
installs. So a report never re-signs anything.

A report is checked before anything is stored: every variant one of the profile's
candidates and named once, every latency of a successful run finite, positive, at most
``BenchLimits.max_latency_ms`` and p95 >= median (INVALID_ARGUMENT otherwise). Each device
may report ``BenchLimits.reports`` times per ``BenchLimits.window_s`` (RESOURCE_EXHAUSTED
beyond); a device runs its benchmark once per model update, so that is plenty.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select

from controller.optimize.pipeline import BUILT
from controller.optimize.select import select_for_profile
from controller.services.model_records import now_ms, variant_target, write_selection
from controller.services.model_views import BenchCandidate, BenchResult, evaluation_from_dict
from controller.services.models import ModelCatalogue, model_row
from controller.store.models_models import BenchmarkRow, ModelRow, SelectionRow, VariantRow
from edgefleet.errors import InvalidInput, ResourceExhausted
from edgefleet.profiles import HardwareProfile, ProfileCatalogue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchLimits:
    reports: int = 10  # per device per window
    window_s: int = 600
    max_latency_ms: float = 600_000.0  # ten minutes a frame is no edge model
    max_error_chars: int = 1000


class DeviceBenchmarks:
    def __init__(
        self,
        catalogue: ModelCatalogue,
        profiles: ProfileCatalogue,
        limits: BenchLimits | None = None,
    ) -> None:
        self.catalogue, self.db, self.profiles = catalogue, catalogue.db, profiles
        self.limits = limits or BenchLimits()
        self._rate = RateLimitItemPerSecond(self.limits.reports, self.limits.window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def is_variant_artifact(self, sha256: str) -> bool:
        """Whether a device may download ``sha256`` by digest (a built variant's file)."""
        return self.catalogue.is_variant_artifact(sha256)

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
        """Check and store a device's measurements and recompute that profile's selections;
        returns the ``model:version`` whose selection changed (a repeat report changes
        nothing)."""
        if not self._limiter.hit(self._rate, device_id):  # malformed reports count too
            log.warning("device %s: benchmark report refused (rate bound)", device_id)
            raise ResourceExhausted(
                f"at most {self.limits.reports} benchmark reports per device every"
                f" {self.limits.window_s} s: try again later"
            )
        allowed = {c.variant_id: c for c in self.bench_candidates(profile)}
        self._check(profile, results, allowed)
        now = now_ms()
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
                        median_ms=r.median_ms if r.ok else 0.0,
                        p95_ms=r.p95_ms if r.ok else 0.0,
                        error=r.error[: self.limits.max_error_chars],
                        reported_ms=now,
                    )
                )
        touched = sorted({(allowed[r.variant_id].model, allowed[r.variant_id].version)
                          for r in results})  # fmt: skip
        hardware = self.profiles.get(profile)
        return [f"{m}:{v}" for m, v in touched if self.reselect(m, v, hardware)]

    def _check(
        self, profile: str, results: Sequence[BenchResult], allowed: dict[str, BenchCandidate]
    ) -> None:
        ids = [r.variant_id for r in results]
        unknown = [i for i in ids if i not in allowed]
        if unknown:
            raise InvalidInput(f"not bench candidates of profile {profile}: {unknown[:10]}")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InvalidInput(f"each variant at most once per report: {repeated[:10]} repeat")
        most = self.limits.max_latency_ms
        for r in results:
            if not r.ok:
                continue
            for what, ms in (("median", r.median_ms), ("p95", r.p95_ms)):
                if not (math.isfinite(ms) and 0.0 < ms <= most):
                    raise InvalidInput(
                        f"{r.variant_id}: {what} latency {ms!r} ms is not a measurement"
                        f" (a successful run needs 0 < ms <= {most:g})"
                    )
            if r.p95_ms < r.median_ms:
                raise InvalidInput(
                    f"{r.variant_id}: p95 latency {r.p95_ms:g} ms is below the median"
                    f" {r.median_ms:g} ms"
                )

    def reselect(self, model: str, version: int, profile: HardwareProfile) -> bool:
        """Recompute one profile's recommendation from device measurements; True when it
        changed. Only the build's candidates (the signed targets) can be selected."""
        with self.db.session() as s:
            row = model_row(s, model, version)
            old = s.get(SelectionRow, (row.id, profile.name))
            if old is None:  # the version was not built for this profile
                return False
            keep = list(old.candidates or [])
            evaluations = [
                evaluation_from_dict(r.metrics)
                for r in s.scalars(
                    select(VariantRow).where(
                        VariantRow.model_id == row.id, VariantRow.status == BUILT
                    )
                )
            ]
            device = self.device_latencies(s, model, version, profile.name)
            selection = select_for_profile(evaluations, profile, device_latencies=device)
            if selection.variant is not None and selection.variant not in keep:
                log.warning("%s:%d for %s: %s is not a signed candidate; kept the selection",
                            model, version, profile.name, selection.variant)  # fmt: skip
                return False
            variant_id = f"{model}:{version}:{selection.variant}" if selection.variant else ""
            after = (variant_id, selection.latency_ms, dict(selection.rejected))
            if after == (old.variant_id, old.latency_ms, dict(old.rejected or {})):
                return False
            write_selection(s, row, profile.name, selection, candidates=keep)
        log.info("reselected %s:%d for %s: %s (%s)", model, version, profile.name,
                 selection.variant, selection.latency_source)  # fmt: skip
        return True

    def device_latencies(self, s: Any, model: str, version: int, profile: str) -> dict[str, float]:
        """variant kind -> median over devices of ``profile`` of their reported medians."""
        rows = s.scalars(
            select(BenchmarkRow).where(
                BenchmarkRow.profile == profile,
                BenchmarkRow.variant_id.like(f"{model}:{version}:%"),
                BenchmarkRow.ok.is_(True),
            )
        ).all()
        by_kind: dict[str, list[float]] = {}
        for r in rows:
            if math.isfinite(r.median_ms) and r.median_ms > 0:  # rows stored before the checks
                by_kind.setdefault(r.variant_id.rsplit(":", 1)[-1], []).append(r.median_ms)
        return {k: float(statistics.median(v)) for k, v in by_kind.items()}
