"""The model registry: versions, builds, variants, per-profile selections and their release.

    service = ModelService(db, store, releases, profiles, workdir)
    info = service.add_model("digits", onnx_sha256, validation_sha256, ...)
    report = service.build(BuildRequest("digits", profiles=("x86-64-vnni",)), progress=cb)
    service.selected_variant("digits", 1, "x86-64-vnni")   # for rollouts
    service.cloud_model_for("digits")                      # for cloud serving

Source files live content-addressed in the artifact store (uploaded before ``add_model``,
which deletes them again when validation fails and nothing else references them). A build
stores every built variant in the store, records variants and selections in one
transaction, then publishes one TUF target per (profile, variant the profile can run) with
``selected`` telling which one won.

Releases are immutable: once a version has built variants, its variants and signed targets
never change. Building it again is refused (FAILED_PRECONDITION); ``BuildRequest.rebuild``
builds the same sources as the next version instead (``rebuilt_from`` says of which). A
rollout pins the exact variant per profile it started with (``release_variants``).
On-device benchmarks only change the *recommendation* of a version (which of its signed
candidates is selected for a profile, i.e. what the next rollout pins); the set of signed
targets stays, and the repository is re-signed only when the selected variant changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from controller.artifacts import ArtifactNotFound, ArtifactStore
from controller.build.errors import BuildError
from controller.build.evaluate import MeasureConfig
from controller.build.pipeline import BUILT, BuildOptions, BuildReport
from controller.build.select import Selection, select_variants
from controller.build.source import SourceModel, inspect_onnx
from controller.build.tflite_variants import Onnx2TfConfig
from controller.services.model_bench import DeviceBenchmarks, variant_target
from controller.services.model_files import check_npz
from controller.services.model_views import (
    CLOUD,
    EDGE,
    BuildRequest,
    CloudModelInfo,
    ModelInfo,
    SelectedVariant,
    SelectionView,
    VariantsReport,
    evaluation_from_dict,
    model_info,
    selection_view,
    variant_view,
)
from controller.services.releases import Releases, StagedTarget
from controller.store.db import Database
from controller.store.models_models import (
    BuildRow,
    ModelRow,
    SelectionRow,
    VariantRow,
)
from edgefleet.errors import FailedPrecondition, InvalidInput, NotFound
from edgefleet.modelmeta import Preprocessing, VariantMetadata
from edgefleet.profiles import HardwareProfile, ProfileCatalogue

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _now_ms() -> int:
    return int(time.time() * 1000)


class ModelService(DeviceBenchmarks):
    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        releases: Releases,
        profiles: ProfileCatalogue,
        workdir: Path,
        *,
        measure: MeasureConfig | None = None,
        onnx2tf: Onnx2TfConfig | None = None,
    ) -> None:
        self.db, self.store, self.releases, self.profiles = db, store, releases, profiles
        self.onnx2tf = onnx2tf or Onnx2TfConfig()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.measure = measure or MeasureConfig()
        self._building: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._build_slot = threading.Semaphore(1)  # builds are CPU-heavy: one at a time
        with self.db.session() as s:  # builds interrupted by a restart
            for row in s.scalars(select(ModelRow).where(ModelRow.build_status == "running")):
                row.build_status = "failed"

    # -- registering -------------------------------------------------------------------------
    def add_model(
        self,
        name: str,
        onnx_sha256: str,
        validation_sha256: str,
        calibration_sha256: str = "",
        labels: Sequence[str] = (),
        preprocess_json: str = "",
        cloud_for: str = "",
    ) -> ModelInfo:
        """Validate everything, then register the next version; on failure the uploads that
        nothing else references are deleted from the store."""
        uploads = [d for d in (onnx_sha256, validation_sha256, calibration_sha256) if d]
        try:
            return self._add_model(
                name,
                onnx_sha256,
                validation_sha256,
                calibration_sha256,
                tuple(labels),
                preprocess_json,
                cloud_for,
            )
        except Exception:
            self._delete_unreferenced(uploads)
            raise

    def _add_model(
        self,
        name: str,
        onnx_sha256: str,
        validation_sha256: str,
        calibration_sha256: str,
        labels: tuple[str, ...],
        preprocess_json: str,
        cloud_for: str,
    ) -> ModelInfo:
        if not _NAME_RE.match(name):
            raise InvalidInput(f"invalid model name {name!r} (letters, digits, . _ -)")
        if not onnx_sha256 or not validation_sha256:
            raise InvalidInput("a model needs an ONNX file and validation data")
        if cloud_for and not self._exists(cloud_for):
            raise NotFound(f"no edge model {cloud_for!r} for --cloud-for")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            files = self._materialise_sources(
                Path(tmp), onnx_sha256, validation_sha256, calibration_sha256
            )
            check_npz(files["validation"], ("x", "y"), "validation data")
            if "calibration" in files:
                check_npz(files["calibration"], ("x",), "calibration data")
            try:
                signature = inspect_onnx(files["onnx"])
                pre = _preprocessing(preprocess_json, signature.input_shape, signature.layout)
                SourceModel.from_files(
                    files["onnx"],
                    name,
                    1,
                    pre,
                    files["validation"],
                    files.get("calibration"),
                    labels,
                )
            except BuildError as exc:
                raise InvalidInput(_without_paths(str(exc), files)) from exc
        size = self.store.size(onnx_sha256)
        with self.db.session() as s:
            version = (
                s.scalar(select(func.max(ModelRow.version)).where(ModelRow.name == name)) or 0
            ) + 1
            row = ModelRow(
                name=name,
                version=version,
                role=CLOUD if cloud_for else EDGE,
                cloud_for=cloud_for,
                source_sha256=onnx_sha256,
                source_size=size,
                input_name=signature.input_name,
                input_shape=list(signature.input_shape),
                input_dtype=signature.input_dtype,
                layout=signature.layout,
                output_name=signature.output_name,
                num_classes=signature.num_classes,
                preprocessing=_pre_dict(pre),
                labels=list(labels),
                validation_sha256=validation_sha256,
                calibration_sha256=calibration_sha256,
                build_status="",
                created_ms=_now_ms(),
            )
            s.add(row)
            s.flush()
            info = model_info(row)
        log.info("registered model %s:%d (%s)", name, version, info.role)
        return info

    def _exists(self, name: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(ModelRow.id).where(ModelRow.name == name).limit(1)) is not None

    def _materialise_sources(
        self, tmp: Path, onnx: str, validation: str, calibration: str
    ) -> dict[str, Path]:
        wanted = {"onnx": (onnx, "model.onnx"), "validation": (validation, "validation.npz")}
        if calibration:
            wanted["calibration"] = (calibration, "calibration.npz")
        files = {}
        for key, (digest, file) in wanted.items():
            try:
                files[key] = self.materialise(digest, tmp / file)
            except ArtifactNotFound as exc:
                raise NotFound(f"{key} artifact {digest} was not uploaded") from exc
        return files

    def materialise(self, sha256: str, dest: Path) -> Path:
        """Copy an artifact out of the store into ``dest``."""
        with self.store.open(sha256) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return dest

    def _delete_unreferenced(self, digests: Sequence[str]) -> None:
        with self.db.session() as s:
            used: set[str] = set()
            for column in (
                ModelRow.source_sha256,
                ModelRow.validation_sha256,
                ModelRow.calibration_sha256,
            ):
                used.update(s.scalars(select(column)).all())
        for digest in set(digests) - used:
            with contextlib.suppress(Exception):
                self.store.delete(digest)

    # -- reading -----------------------------------------------------------------------------
    def _row(self, s: Any, name: str, version: int) -> ModelRow:
        query = select(ModelRow).where(ModelRow.name == name)
        if version:
            query = query.where(ModelRow.version == version)
        row = s.scalars(query.order_by(ModelRow.version.desc()).limit(1)).first()
        if row is None:
            raise NotFound(f"no model {name}" + (f":{version}" if version else ""))
        return row

    def list_models(self) -> list[ModelInfo]:
        with self.db.session() as s:
            counts = dict(
                s.execute(
                    select(VariantRow.model_id, func.count())
                    .where(VariantRow.status == BUILT)
                    .group_by(VariantRow.model_id)
                ).all()
            )
            rows = s.scalars(select(ModelRow).order_by(ModelRow.name, ModelRow.version)).all()
            return [model_info(r, counts.get(r.id, 0)) for r in rows]

    def variants(self, name: str, version: int = 0) -> VariantsReport:
        with self.db.session() as s:
            row = self._row(s, name, version)
            variants = [
                variant_view(v)
                for v in s.scalars(select(VariantRow).where(VariantRow.model_id == row.id))
            ]
            by_id = {v.variant_id: v for v in variants}
            selections = []
            for sel in s.scalars(
                select(SelectionRow)
                .where(SelectionRow.model_id == row.id)
                .order_by(SelectionRow.profile)
            ):
                chosen = by_id.get(sel.variant_id)
                path = (
                    variant_target(row.name, row.version, chosen.variant, sel.profile, chosen.file)
                    if chosen
                    else ""
                )
                selections.append(selection_view(sel, path))
            build = s.scalars(
                select(BuildRow).where(BuildRow.model_id == row.id).order_by(BuildRow.id.desc())
            ).first()
            accuracy = float((build.report or {}).get("source_accuracy", 0.0)) if build else 0.0
            built = sum(1 for v in variants if v.status == BUILT)
            return VariantsReport(model_info(row, built), accuracy, variants, selections)

    def selected_variant(self, model: str, version: int, profile: str) -> SelectedVariant | None:
        report = self.variants(model, version)
        sel = next((x for x in report.selections if x.profile == profile), None)
        return None if sel is None else _selected(sel, {v.variant_id: v for v in report.variants})

    def variant_for(self, variant_id: str, profile: str) -> SelectedVariant | None:
        """A built variant by id, when it is one of ``profile``'s signed targets (rollbacks
        go back to exactly the variant a device ran, whatever is recommended now)."""
        with self.db.session() as s:
            v = s.get(VariantRow, variant_id)
            if v is None or v.status != BUILT:
                return None
            sel = s.get(SelectionRow, (v.model_id, profile))
            if sel is None or v.kind not in (sel.candidates or ()):
                return None
            return SelectedVariant(
                variant_id=v.variant_id,
                target_path=variant_target(v.model, v.version, v.kind, profile, v.file),
                sha256=v.artifact_sha256,
                size=v.size_bytes,
                metadata=VariantMetadata.from_dict(dict(v.variant_metadata)),
            )

    def cloud_model_for(self, edge_model: str) -> CloudModelInfo | None:
        with self.db.session() as s:
            row = s.scalars(
                select(ModelRow)
                .where(ModelRow.cloud_for == edge_model, ModelRow.role == CLOUD)
                .order_by(ModelRow.version.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            info = model_info(row)
        dest_dir = self.workdir / "cloud"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{info.source_sha256}.onnx"
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            self.materialise(info.source_sha256, tmp)
            tmp.replace(dest)
        return CloudModelInfo(
            info.name, info.version, dest, Preprocessing.from_dict(info.preprocessing), info.labels
        )

    def is_variant_artifact(self, sha256: str) -> bool:
        with self.db.session() as s:
            hit = s.scalar(
                select(VariantRow.variant_id).where(VariantRow.artifact_sha256 == sha256).limit(1)
            )
            return hit is not None

    # -- building ----------------------------------------------------------------------------
    def resolve_profiles(self, names: Sequence[str]) -> list[HardwareProfile]:
        if not names or list(names) == ["all"]:
            return list(self.profiles)
        unknown = [n for n in names if n not in self.profiles]
        if unknown:
            raise InvalidInput(
                f"unknown profile {', '.join(unknown)} (known: {', '.join(self.profiles.names())})"
            )
        return [self.profiles.get(n) for n in names]

    def variant_names(self) -> list[str]:
        """Every variant name a build knows (``BuildRequest.only`` picks among them)."""
        from controller.build.onnx_variants import onnx_variant_specs
        from controller.build.pipeline import MIXED
        from controller.build.tflite_variants import FLAVOURS

        defaults = BuildOptions()
        onnx = onnx_variant_specs(
            static_reduce_range=defaults.static_reduce_range,
            prune_percents=defaults.prune_percents,
            cluster_counts=defaults.cluster_counts,
            calibration_limit=defaults.calibration_limit,
        )
        return [s.name for s in onnx] + [MIXED, *FLAVOURS]

    def check_variant_names(self, names: Sequence[str]) -> None:
        """InvalidInput naming the unknown ones and the known ones (before anything runs)."""
        known = self.variant_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInput(f"unknown variant {', '.join(unknown)} (known: {', '.join(known)})")

    def build(self, request: BuildRequest, progress: Progress | None = None) -> BuildReport:
        from controller.services.model_build import run_build

        profiles = self.resolve_profiles(request.profiles)
        self.check_variant_names(request.only)
        with self._lock:  # the check and the claim are one step: one build per version
            with self.db.session() as s:
                # A cloud model builds like any other: its variants are measured and selected
                # per profile (the controller keeps serving the source model for offloads).
                row = self._row(s, request.name, request.version)
                if request.rebuild:
                    row = self._next_version_of(s, row)
                elif self._built_count(s, row.id):
                    raise FailedPrecondition(_immutable(row, self._next_version(s, row.name)))
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
                report = run_build(self, info, profiles, request, progress)
        except BaseException:
            self._set_status(info, "failed")
            raise
        finally:
            with self._lock:
                self._building.discard(key)
        return report

    @staticmethod
    def _built_count(s: Any, model_id: int) -> int:
        return int(
            s.scalar(
                select(func.count())
                .select_from(VariantRow)
                .where(VariantRow.model_id == model_id, VariantRow.status == BUILT)
            )
            or 0
        )

    @staticmethod
    def _next_version(s: Any, name: str) -> int:
        return (
            int(s.scalar(select(func.max(ModelRow.version)).where(ModelRow.name == name)) or 0) + 1
        )

    def _next_version_of(self, s: Any, row: ModelRow) -> ModelRow:
        """A new version with ``row``'s sources and settings, not built yet."""
        copied = {
            c.key: getattr(row, c.key)
            for c in ModelRow.__table__.columns
            if c.key not in ("id", "version", "build_status", "created_ms", "rebuilt_from")
        }
        new = ModelRow(
            **copied,
            version=self._next_version(s, row.name),
            rebuilt_from=row.version,
            build_status="",
            created_ms=_now_ms(),
        )
        s.add(new)
        s.flush()
        return new

    def check_release(self, model: str, version: int) -> None:
        """For ``rollout start``: NotFound for an unknown version, FailedPrecondition with
        what to do for one that has nothing built."""
        with self.db.session() as s:
            row = s.scalars(
                select(ModelRow).where(ModelRow.name == model, ModelRow.version == version)
            ).first()
            if row is None:
                raise NotFound(f"no model {model}:{version}")
            if self._built_count(s, row.id):
                return
            raise FailedPrecondition(_unbuilt(row))

    def release_variants(self, model: str, version: int) -> dict[str, SelectedVariant | None]:
        """profile -> the variant a rollout of ``model:version`` started now installs (None:
        nothing fits that profile), for every profile the version was built for."""
        report = self.variants(model, version)
        by_id = {v.variant_id: v for v in report.variants}
        return {s.profile: _selected(s, by_id) for s in report.selections}

    def _set_status(self, info: ModelInfo, status: str) -> None:
        with self.db.session() as s:
            self._row(s, info.name, info.version).build_status = status

    def options(self, request: BuildRequest) -> BuildOptions:
        measure = self.measure
        if request.measure_runs:
            from dataclasses import replace

            measure = replace(measure, runs=request.measure_runs, warmup=min(measure.warmup, 2))
        return BuildOptions(measure=measure, onnx2tf=self.onnx2tf, only=tuple(request.only))

    def reselect(self, model: str, version: int, profile: HardwareProfile) -> bool:
        from controller.services.model_build import reselect_profile

        return reselect_profile(self, model, version, profile)

    def selections_for(
        self, s: Any, model_id: int, model: str, version: int, profiles: Sequence[HardwareProfile]
    ) -> dict[str, Selection]:
        rows = s.scalars(
            select(VariantRow).where(VariantRow.model_id == model_id, VariantRow.status == BUILT)
        ).all()
        evaluations = [evaluation_from_dict(r.metrics) for r in rows]
        device = {p.name: self.device_latencies(s, model, version, p.name) for p in profiles}
        return select_variants(evaluations, profiles, device_latencies=device)

    def staged_targets(self, s: Any, row: ModelRow) -> list[StagedTarget]:
        """Every (profile, candidate variant) target of a model version, from the database."""
        targets = []
        for sel in s.scalars(select(SelectionRow).where(SelectionRow.model_id == row.id)):
            for kind in sel.candidates:
                v = s.get(VariantRow, f"{row.name}:{row.version}:{kind}")
                if v is None or v.status != BUILT:
                    continue
                meta = dict(v.variant_metadata)
                custom = {
                    **meta,
                    "profile": sel.profile,
                    "selected": v.variant_id == sel.variant_id,
                }
                targets.append(
                    StagedTarget(
                        variant_target(row.name, row.version, kind, sel.profile, v.file),
                        v.artifact_sha256,
                        v.size_bytes,
                        custom,
                    )
                )
        return targets


_FIELDS = {
    "onnx": "the ONNX model",
    "validation": "validation data",
    "calibration": "calibration data",
}


def _without_paths(message: str, files: dict[str, Path]) -> str:
    """A build error about uploaded files, naming the field instead of the server's temp file."""
    for key, path in files.items():
        message = message.replace(str(path), _FIELDS.get(key, key))
    return message


def _selected(sel: SelectionView, by_id: dict[str, Any]) -> SelectedVariant | None:
    v = by_id.get(sel.variant_id) if sel.variant_id else None
    if v is None:
        return None
    return SelectedVariant(
        variant_id=v.variant_id,
        target_path=sel.target_path,
        sha256=v.sha256,
        size=v.size_bytes,
        metadata=VariantMetadata.from_dict(v.metadata),
    )


def _immutable(row: ModelRow, next_version: int) -> str:
    ref = f"{row.name}:{row.version}"
    return (
        f"{ref} is already built and a built version never changes (a rollout of it always"
        f" installs the same files): register a new version with `edgefleet model add"
        f" {row.name} ...`, or build the same sources again as {row.name}:{next_version} with"
        f" `edgefleet model build {ref} --rebuild`"
    )


def _unbuilt(row: ModelRow) -> str:
    ref = f"{row.name}:{row.version}"
    if row.build_status == "running":
        return f"{ref} is being built: wait for `edgefleet model build {ref}` to finish"
    if row.build_status == "failed":
        return f"the last build of {ref} failed: run `edgefleet model build {ref}` again"
    if row.build_status == "succeeded":
        return f"no variant of {ref} could be built (`edgefleet model variants {ref}` says why)"
    if row.role == CLOUD:
        return (
            f"{ref} is the cloud model of {row.cloud_for}: the controller serves it for"
            f" offloaded frames without a build, but to roll it out to devices build its"
            f" variants first: `edgefleet model build {ref}`"
        )
    return f"{ref} is not built yet: run `edgefleet model build {ref}` first"


def _preprocessing(text: str, input_shape: tuple[int, ...], layout: str) -> Preprocessing:
    if text:
        try:
            return Preprocessing.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise InvalidInput(f"invalid preprocessing JSON: {exc}") from exc
    if layout == "NCHW":
        channels, size = input_shape[1], (input_shape[2], input_shape[3])
    else:
        size, channels = (input_shape[1], input_shape[2]), input_shape[3]
    if min(size) <= 0 or channels <= 0:
        raise InvalidInput("the model's input size is dynamic: pass --preprocess")
    return Preprocessing(size=size, channels=channels, layout=layout)


def _pre_dict(pre: Preprocessing) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(pre)
    data["size"] = list(pre.size)
    data["mean"], data["std"] = list(pre.mean), list(pre.std)
    return data
