"""The model catalogue: registered model versions, their variants and per-profile selections.

    catalogue = ModelCatalogue(db, store, workdir)
    info = catalogue.add_model("digits", onnx_sha256, validation_sha256, ...)
    catalogue.selected_variant("digits", 1, "x86-64-vnni")   # for rollouts
    catalogue.cloud_model_for("digits")                      # for cloud serving

Source files live content-addressed in the artifact store (uploaded before ``add_model``,
which deletes them again when validation fails and nothing else references them). Builds
(``controller.services.model_build.BuildRunner``) fill in variants, selections and signed
targets; device benchmarks (``controller.services.model_bench.DeviceBenchmarks``) can move
a version's recommendation among its signed candidates. This module only reads those, and
registers new versions.

Releases are immutable: once a version has built variants, its variants and signed targets
never change. A rollout pins the exact variant per profile it started with
(``release_variants``); a rollback goes back to exactly the variant a device ran
(``variant_for``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from controller.artifacts import ArtifactNotFound, ArtifactStore
from controller.optimize.errors import BuildError
from controller.optimize.pipeline import BUILT
from controller.optimize.source import SourceModel, inspect_onnx
from controller.services.model_checks import (
    preprocessing,
    preprocessing_dict,
    unbuilt_hint,
    without_paths,
)
from controller.services.model_files import check_npz
from controller.services.model_records import built_count, now_ms, variant_target
from controller.services.model_views import (
    CLOUD,
    EDGE,
    CloudModelInfo,
    ModelInfo,
    SelectedVariant,
    SelectionView,
    VariantsReport,
    VariantView,
    model_info,
    selection_view,
    variant_view,
)
from controller.store.db import Database
from controller.store.models_models import BuildRow, ModelRow, SelectionRow, VariantRow
from edgefleet.errors import FailedPrecondition, InvalidInput, NotFound
from edgefleet.modelmeta import Preprocessing, VariantMetadata

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelCatalogue:
    def __init__(self, db: Database, store: ArtifactStore, workdir: Path) -> None:
        self.db, self.store = db, store
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)

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
            files = self.materialise_sources(
                Path(tmp), onnx_sha256, validation_sha256, calibration_sha256
            )
            check_npz(files["validation"], ("x", "y"), "validation data")
            if "calibration" in files:
                check_npz(files["calibration"], ("x",), "calibration data")
            try:
                signature = inspect_onnx(files["onnx"])
                pre = preprocessing(preprocess_json, signature.input_shape, signature.layout)
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
                raise InvalidInput(without_paths(str(exc), files)) from exc
        size = self.store.size(onnx_sha256)
        with self.db.session() as s:
            row = ModelRow(
                name=name,
                version=next_version(s, name),
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
                preprocessing=preprocessing_dict(pre),
                labels=list(labels),
                validation_sha256=validation_sha256,
                calibration_sha256=calibration_sha256,
                build_status="",
                created_ms=now_ms(),
            )
            s.add(row)
            s.flush()
            info = model_info(row)
        log.info("registered model %s (%s)", info.ref, info.role)
        return info

    def _exists(self, name: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(ModelRow.id).where(ModelRow.name == name).limit(1)) is not None

    def materialise_sources(
        self, tmp: Path, onnx: str, validation: str, calibration: str
    ) -> dict[str, Path]:
        """Copy a version's source files out of the store into ``tmp``."""
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
    def info(self, name: str, version: int = 0) -> ModelInfo:
        """One version (0: the latest); NotFound when there is none."""
        with self.db.session() as s:
            return model_info(model_row(s, name, version))

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
            row = model_row(s, name, version)
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
        """The variant recommended now for ``profile`` (None: nothing fits it)."""
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

    def check_release(self, model: str, version: int) -> None:
        """For ``rollout start``: NotFound for an unknown version, FailedPrecondition with
        what to do for one that has nothing built."""
        with self.db.session() as s:
            row = s.scalars(
                select(ModelRow).where(ModelRow.name == model, ModelRow.version == version)
            ).first()
            if row is None:
                raise NotFound(f"no model {model}:{version}")
            if built_count(s, row.id):
                return
            raise FailedPrecondition(unbuilt_hint(row))

    def release_variants(self, model: str, version: int) -> dict[str, SelectedVariant | None]:
        """profile -> the variant a rollout of ``model:version`` started now installs (None:
        nothing fits that profile), for every profile the version was built for."""
        report = self.variants(model, version)
        by_id = {v.variant_id: v for v in report.variants}
        return {s.profile: _selected(s, by_id) for s in report.selections}

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


def model_row(s: Any, name: str, version: int) -> ModelRow:
    """The row of ``name:version`` (0: the latest) in session ``s``; NotFound otherwise."""
    query = select(ModelRow).where(ModelRow.name == name)
    if version:
        query = query.where(ModelRow.version == version)
    row = s.scalars(query.order_by(ModelRow.version.desc()).limit(1)).first()
    if row is None:
        raise NotFound(f"no model {name}" + (f":{version}" if version else ""))
    return row


def next_version(s: Any, name: str) -> int:
    return int(s.scalar(select(func.max(ModelRow.version)).where(ModelRow.name == name)) or 0) + 1


def _selected(sel: SelectionView, by_id: dict[str, VariantView]) -> SelectedVariant | None:
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
