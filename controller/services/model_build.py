"""The write side of a model build: run the pipeline, store variants, record, sign.

Kept apart from ``models.py`` so each stays small; ``ModelService.build`` calls ``run_build``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from controller.artifacts import ArtifactRef
from controller.build.errors import BuildError
from controller.build.pipeline import BUILT, BuildReport, build_model
from controller.build.select import Selection
from controller.build.source import SourceModel
from controller.services.model_views import BuildRequest, ModelInfo, candidates_of
from controller.store.models_models import BuildRow, ModelRow, SelectionRow, VariantRow
from edgefleet.errors import FailedPrecondition, InvalidInput
from edgefleet.modelmeta import Preprocessing
from edgefleet.profiles import HardwareProfile

if TYPE_CHECKING:
    from controller.services.models import ModelService, Progress

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _prefix(model: str, version: int) -> str:
    return f"models/{model}/{version}/"


def run_build(
    service: ModelService,
    info: ModelInfo,
    profiles: Sequence[HardwareProfile],
    request: BuildRequest,
    progress: Progress | None,
) -> BuildReport:
    started = _now_ms()
    with tempfile.TemporaryDirectory(prefix=f"build-{info.name}-", dir=service.workdir) as tmp:
        work = Path(tmp)
        files = service._materialise_sources(
            work, info.source_sha256, info.validation_sha256, info.calibration_sha256
        )
        try:
            source = SourceModel.from_files(
                files["onnx"],
                info.name,
                info.version,
                Preprocessing.from_dict(info.preprocessing),
                files["validation"],
                files.get("calibration"),
                info.labels,
            )
        except BuildError as exc:
            raise InvalidInput(str(exc)) from exc
        report = build_model(
            source,
            profiles,
            work / "variants",
            progress=progress,
            include_tflite=request.include_tflite,
            options=service.options(request),
        )
        stored = {}
        for result in report.built():
            assert result.metadata is not None
            path = Path(result.directory) / result.metadata.file
            stored[result.variant] = service.store.put_file(path)
    _record(service, info, profiles, report, stored, started)
    log.info(
        "built %s:%d: %d variants, selections %s",
        info.name,
        info.version,
        len(stored),
        {p: s.variant for p, s in report.selections.items()},
    )
    return report


def _record(
    service: ModelService,
    info: ModelInfo,
    profiles: Sequence[HardwareProfile],
    report: BuildReport,
    stored: dict[str, ArtifactRef],
    started: int,
) -> None:
    with service.db.session() as s:
        row = s.scalars(
            select(ModelRow).where(ModelRow.name == info.name, ModelRow.version == info.version)
        ).one()
        released = s.scalar(
            select(VariantRow.variant_id)
            .where(VariantRow.model_id == row.id, VariantRow.status == BUILT)
            .limit(1)
        )
        if released is not None:  # e.g. another controller replica built it meanwhile
            raise FailedPrecondition(
                f"{info.ref} was built meanwhile; a built version never changes"
            )
        # Only an unreleased version's records are replaced (a failed or empty earlier build).
        s.execute(delete(SelectionRow).where(SelectionRow.model_id == row.id))
        s.execute(delete(VariantRow).where(VariantRow.model_id == row.id))
        s.flush()
        for r in report.results:
            ev, meta = r.evaluation, r.metadata
            s.add(
                VariantRow(
                    variant_id=f"{info.name}:{info.version}:{r.variant}",
                    model_id=row.id,
                    model=info.name,
                    version=info.version,
                    kind=r.variant,
                    runtime=r.runtime,
                    precision=r.precision,
                    status=r.status,
                    reason=r.reason[:1000],
                    artifact_sha256=getattr(stored.get(r.variant), "sha256", ""),
                    file=meta.file if meta else "",
                    size_bytes=getattr(stored.get(r.variant), "size", 0),
                    zstd_bytes=ev.zstd_bytes if ev else 0,
                    metrics=ev.to_dict() if ev and r.status == BUILT else {},
                    variant_metadata=meta.to_dict() if meta and r.status == BUILT else {},
                )
            )
        _write_selections(s, row, report.selections)
        s.add(
            BuildRow(
                model_id=row.id,
                status="succeeded",
                profiles=[p.name for p in profiles],
                report=report.to_dict(),
                started_ms=started,
                finished_ms=_now_ms(),
            )
        )
        row.build_status = "succeeded"
        s.flush()
        targets = service.staged_targets(s, row)
        # Sign inside the transaction: a failure to publish rolls the records back too.
        service.releases.replace_targets(_prefix(info.name, info.version), targets)


def _write_selections(s: object, row: ModelRow, selections: dict[str, Selection]) -> None:
    now = _now_ms()
    for profile, sel in selections.items():
        s.merge(  # type: ignore[attr-defined]
            SelectionRow(
                model_id=row.id,
                profile=profile,
                variant_id=f"{row.name}:{row.version}:{sel.variant}" if sel.variant else "",
                latency_ms=sel.latency_ms,
                latency_source=sel.latency_source if sel.variant else "",
                rejected=dict(sel.rejected),
                candidates=candidates_of(sel),
                updated_ms=now,
            )
        )


def reselect_profile(
    service: ModelService, model: str, version: int, profile: HardwareProfile
) -> bool:
    """Recompute one profile's recommendation from device measurements; True when it changed.

    The version's signed targets (one per candidate) stay as the build published them: only
    which candidate is ``selected`` can change, and the repository is re-signed only then.
    Rollouts already started keep the variants they pinned."""
    with service.db.session() as s:
        row = s.scalars(
            select(ModelRow).where(ModelRow.name == model, ModelRow.version == version)
        ).one()
        selection = service.selections_for(s, row.id, model, version, [profile])[profile.name]
        old = s.get(SelectionRow, (row.id, profile.name))
        before = _selection_state(old)
        keep = list(old.candidates) if old is not None else []
        variant_id = f"{model}:{version}:{selection.variant}" if selection.variant else ""
        # candidates are the build's (their targets are signed); device numbers only reorder
        candidates = sorted(set(keep) | set(candidates_of(selection))) if keep else None
        after = (
            variant_id,
            selection.latency_ms,
            selection.latency_source if selection.variant else "",
            dict(selection.rejected),
            candidates if candidates is not None else candidates_of(selection),
        )
        if after == before:
            return False
        _write_selections(s, row, {profile.name: selection})
        s.flush()
        merged = s.get(SelectionRow, (row.id, profile.name))
        assert merged is not None
        if candidates is not None:
            merged.candidates = candidates
        s.flush()
        if before is None or (before[0], before[4]) != (after[0], after[4]):
            service.releases.replace_targets(
                _prefix(model, version), service.staged_targets(s, row)
            )
            log.info("re-signed %s:%d: %s now selected for %s", model, version,
                     selection.variant, profile.name)  # fmt: skip
    log.info(
        "reselected %s:%d for %s: %s (%s)",
        model,
        version,
        profile.name,
        selection.variant,
        selection.latency_source,
    )
    return True


def _selection_state(row: SelectionRow | None) -> tuple[object, ...] | None:
    if row is None:
        return None
    return (
        row.variant_id,
        row.latency_ms,
        row.latency_source,
        dict(row.rejected or {}),
        list(row.candidates or []),
    )
