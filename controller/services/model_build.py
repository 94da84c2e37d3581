"""The build runner: one build at a time per controller, recorded and signed as one step.

    runner = BuildRunner(catalogue, releases, profiles, workdir)
    report = runner.build(BuildRequest("digits", profiles=("x86-64-vnni",)), progress=cb)

A build stores every built variant in the artifact store, records variants and selections
in one transaction, then publishes one TUF target per (profile, variant the profile can
run). A version that has built variants is never built again (FAILED_PRECONDITION);
``BuildRequest.rebuild`` builds the same sources as the next version instead. Bad input
(unknown profile or variant names) is refused before anything is registered or signed.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from controller.artifacts import ArtifactRef
from controller.monitoring.estimate import CloudTable
from controller.monitoring.events import EventListener, FleetEvent, announce
from controller.optimize.errors import BuildError
from controller.optimize.evaluate import MeasureConfig
from controller.optimize.pipeline import (
    BUILT,
    BuildOptions,
    BuildReport,
    VariantResult,
    build_model,
)
from controller.optimize.source import SourceModel
from controller.optimize.tflite_variants import Onnx2TfConfig
from controller.optimize.trained_variants import TRAINING_KEY
from controller.services.cloud_tables import METRICS_KEY as CLOUD_TABLE_KEY
from controller.services.cloud_tables import measure_tables
from controller.services.model_checks import immutable_hint
from controller.services.model_records import (
    built_count,
    now_ms,
    release_prefix,
    staged_targets,
    write_selection,
)
from controller.services.model_views import BuildRequest, ModelInfo, model_info
from controller.services.models import ModelCatalogue, model_row, next_version
from controller.services.releases import Releases
from controller.store.models_models import BuildRow, ModelRow, SelectionRow, VariantRow
from edgefleet.errors import FailedPrecondition, InvalidInput
from edgefleet.modelmeta import Preprocessing
from edgefleet.profiles import HardwareProfile, ProfileCatalogue

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]


def variant_names() -> list[str]:
    """Every variant name a build knows (``BuildRequest.only`` picks among them)."""
    from controller.optimize.onnx_variants import onnx_variant_specs
    from controller.optimize.openvino_variants import OPENVINO_VARIANTS
    from controller.optimize.pipeline import MIXED
    from controller.optimize.tflite_variants import FLAVOURS
    from controller.optimize.trained_variants import trained_variant_names

    defaults = BuildOptions()
    onnx = onnx_variant_specs(
        static_reduce_range=defaults.static_reduce_range,
        prune_percents=defaults.prune_percents,
        cluster_counts=defaults.cluster_counts,
        calibration_limit=defaults.calibration_limit,
    )
    trained = trained_variant_names(defaults.trained)
    return [s.name for s in onnx] + [MIXED, *trained, *OPENVINO_VARIANTS, *FLAVOURS]


class BuildRunner:
    def __init__(
        self,
        catalogue: ModelCatalogue,
        releases: Releases,
        profiles: ProfileCatalogue,
        workdir: Path,
        *,
        measure: MeasureConfig | None = None,
        onnx2tf: Onnx2TfConfig | None = None,
    ) -> None:
        self.catalogue, self.releases, self.profiles = catalogue, releases, profiles
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.measure = measure or MeasureConfig()
        self.onnx2tf = onnx2tf or Onnx2TfConfig()
        self._building: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._build_slot = threading.Semaphore(1)  # builds are CPU-heavy: one at a time
        self.listeners: list[EventListener] = []  # told of every build that ends
        with catalogue.db.session() as s:  # builds interrupted by a restart
            for row in s.scalars(select(ModelRow).where(ModelRow.build_status == "running")):
                row.build_status = "failed"

    # -- checks before anything runs ---------------------------------------------------------
    def resolve_profiles(self, names: Sequence[str]) -> list[HardwareProfile]:
        if not names or list(names) == ["all"]:
            return list(self.profiles)
        unknown = [n for n in names if n not in self.profiles]
        if unknown:
            raise InvalidInput(
                f"unknown profile {', '.join(unknown)} (known: {', '.join(self.profiles.names())})"
            )
        return [self.profiles.get(n) for n in names]

    def check_variant_names(self, names: Sequence[str]) -> None:
        """InvalidInput naming the unknown ones and the known ones (before anything runs)."""
        known = variant_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInput(f"unknown variant {', '.join(unknown)} (known: {', '.join(known)})")

    def check(self, request: BuildRequest) -> list[HardwareProfile]:
        """Every check of a request that needs no build: profiles, variant names, runs."""
        if request.measure_runs < 0:
            raise InvalidInput("measure_runs must not be negative")
        profiles = self.resolve_profiles(request.profiles)
        self.check_variant_names(request.only)
        if not request.include_tflite:
            from controller.optimize.tflite_variants import FLAVOURS

            litert = [n for n in request.only if n in FLAVOURS]
            if litert:
                raise InvalidInput(
                    f"LiteRT variants ({', '.join(litert)}) cannot be built with --no-tflite:"
                    " drop one or the other"
                )
        return profiles

    # -- building ----------------------------------------------------------------------------
    def build(self, request: BuildRequest, progress: Progress | None = None) -> BuildReport:
        profiles = self.check(request)
        db = self.catalogue.db
        with self._lock:  # the check and the claim are one step: one build per version
            with db.session() as s:
                # A cloud model builds like any other: its variants are measured and selected
                # per profile (the controller keeps serving the source model for offloads).
                row = model_row(s, request.name, request.version)
                if request.rebuild:
                    row = _next_version_of(s, row)
                elif built_count(s, row.id):
                    raise FailedPrecondition(immutable_hint(row, next_version(s, row.name)))
                key = (row.name, row.version)
                info = model_info(row)
            if key in self._building:
                raise FailedPrecondition(f"{key[0]}:{key[1]} is already being built")
            self._building.add(key)
        if request.rebuild:
            log.info("rebuilding %s:%d as %s", request.name, info.rebuilt_from, info.ref)
        try:
            self._set_status(info, "running")
            with self._build_slot:
                report = self._run(info, profiles, request, progress)
        except BaseException as exc:
            self._set_status(info, "failed")
            announce(self.listeners, FleetEvent("model.build_failed", f"build of {info.ref} "
                     f"failed: {exc}"[:1000], subject=info.ref))  # fmt: skip
            raise
        finally:
            with self._lock:
                self._building.discard(key)
        selections = {p: sel.variant for p, sel in report.selections.items()}
        announce(self.listeners, FleetEvent("model.built", f"built {info.ref}: "
                 f"{len(report.built())} variants", subject=info.ref,
                 data={"selections": selections}))  # fmt: skip
        return report

    def options(self, request: BuildRequest, training: Path | None = None) -> BuildOptions:
        measure = self.measure
        if request.measure_runs:
            measure = replace(measure, runs=request.measure_runs, warmup=min(measure.warmup, 2))
        trained = replace(BuildOptions().trained, training_frames=training)
        return BuildOptions(
            measure=measure, onnx2tf=self.onnx2tf, only=tuple(request.only), trained=trained
        )

    def _training_frames(self, request: BuildRequest, work: Path, classes: int) -> Path | None:
        """The request's training frames out of the store, checked (InvalidInput) before the
        build starts; None when the request has none."""
        if not request.training_sha256:
            return None
        from controller.training.data import load_frames

        path = self.catalogue.materialise(request.training_sha256, work / "training.npz")
        load_frames(path).check_classes(classes)
        return path

    def _set_status(self, info: ModelInfo, status: str) -> None:
        with self.catalogue.db.session() as s:
            model_row(s, info.name, info.version).build_status = status

    def _run(
        self,
        info: ModelInfo,
        profiles: Sequence[HardwareProfile],
        request: BuildRequest,
        progress: Progress | None,
    ) -> BuildReport:
        started = now_ms()
        with tempfile.TemporaryDirectory(prefix=f"build-{info.name}-", dir=self.workdir) as tmp:
            work = Path(tmp)
            files = self.catalogue.materialise_sources(
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
            training = self._training_frames(request, work, source.signature.num_classes)
            report = build_model(
                source,
                profiles,
                work / "variants",
                progress=progress,
                include_tflite=request.include_tflite,
                options=self.options(request, training),
            )
            tables = self._cloud_tables(info, source, report)
            stored = {}
            for result in report.built():
                assert result.metadata is not None
                path = Path(result.directory) / result.metadata.file
                stored[result.variant] = self.catalogue.store.put_file(path)
        self._record(info, profiles, report, stored, started, tables)
        log.info(
            "built %s: %d variants, selections %s",
            info.ref,
            len(stored),
            {p: s.variant for p, s in report.selections.items()},
        )
        return report

    def _cloud_tables(
        self, info: ModelInfo, source: SourceModel, report: BuildReport
    ) -> dict[str, CloudTable]:
        """Each built variant's cloud table (controller.services.cloud_tables), when a cloud
        model is registered for this edge model; a failure costs the tables, not the build."""
        cloud = self.catalogue.cloud_model_for(info.name)
        if cloud is None:
            log.info("%s: no cloud model registered, no cloud-by-confidence table", info.ref)
            return {}
        try:
            return measure_tables(source, report.built(), cloud)
        except Exception:
            log.exception("%s: measuring the cloud-by-confidence tables failed", info.ref)
            return {}

    def _record(
        self,
        info: ModelInfo,
        profiles: Sequence[HardwareProfile],
        report: BuildReport,
        stored: dict[str, ArtifactRef],
        started: int,
        tables: dict[str, CloudTable] | None = None,
    ) -> None:
        with self.catalogue.db.session() as s:
            row = model_row(s, info.name, info.version)
            if built_count(s, row.id):  # e.g. another controller replica built it meanwhile
                raise FailedPrecondition(
                    f"{info.ref} was built meanwhile; a built version never changes"
                )
            # Only an unreleased version's records are replaced (a failed or empty build).
            s.execute(delete(SelectionRow).where(SelectionRow.model_id == row.id))
            s.execute(delete(VariantRow).where(VariantRow.model_id == row.id))
            s.flush()
            for r in report.results:
                table = (tables or {}).get(r.variant)
                s.add(_variant_row(info, row.id, r, stored.get(r.variant), table))
            for profile, sel in report.selections.items():
                write_selection(s, row, profile, sel)
            s.add(
                BuildRow(
                    model_id=row.id,
                    status="succeeded",
                    profiles=[p.name for p in profiles],
                    report=report.to_dict(),
                    started_ms=started,
                    finished_ms=now_ms(),
                )
            )
            row.build_status = "succeeded"
            s.flush()
            targets = staged_targets(s, row)
            if targets:  # nothing built: nothing to sign (and nothing signed to replace)
                # Sign inside the transaction: a failure to publish rolls the records back too.
                self.releases.replace_targets(release_prefix(info.name, info.version), targets)


def _variant_row(
    info: ModelInfo,
    model_id: int,
    r: VariantResult,
    ref: ArtifactRef | None,
    table: CloudTable | None = None,
) -> VariantRow:
    ev, meta = r.evaluation, r.metadata
    built = r.status == BUILT
    metrics = ev.to_dict() if ev and built else {}
    if meta is not None and metrics and TRAINING_KEY in meta.extra:
        metrics[TRAINING_KEY] = meta.extra[TRAINING_KEY]  # data used, epochs, wall time per stage
    if table is not None and metrics:
        metrics[CLOUD_TABLE_KEY] = table.to_dict()
    return VariantRow(
        variant_id=f"{info.name}:{info.version}:{r.variant}",
        model_id=model_id,
        model=info.name,
        version=info.version,
        kind=r.variant,
        runtime=r.runtime,
        precision=r.precision,
        status=r.status,
        reason=r.reason[:1000],
        artifact_sha256=ref.sha256 if ref else "",
        file=meta.file if meta else "",
        size_bytes=ref.size if ref else 0,
        zstd_bytes=ev.zstd_bytes if ev else 0,
        metrics=metrics,
        variant_metadata=meta.to_dict() if meta and built else {},
    )


def _next_version_of(s: Any, row: ModelRow) -> ModelRow:
    """A new version with ``row``'s sources and settings, not built yet."""
    copied = {
        c.key: getattr(row, c.key)
        for c in ModelRow.__table__.columns
        if c.key not in ("id", "version", "build_status", "created_ms", "rebuilt_from")
    }
    new = ModelRow(
        **copied,
        version=next_version(s, row.name),
        rebuilt_from=row.version,
        build_status="",
        created_ms=now_ms(),
    )
    s.add(new)
    s.flush()
    return new
