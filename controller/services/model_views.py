"""Domain types of the model registry and conversions from its rows (no gRPC types here)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.optimize.evaluate import Evaluation
from controller.optimize.select import SLOWER, TOO_CLOSE, Selection
from controller.serving.plan import ServingPlan
from controller.store.models_models import ModelRow, SelectionRow, VariantRow
from edgefleet.modelmeta import Preprocessing, VariantMetadata

EDGE, CLOUD = "edge", "cloud"
# Reasons select_for_profile gives variants that fit the profile but lost on latency/size.
# ("as fast as": the wording of builds before latency intervals.)
_LOST_ON_SPEED = (SLOWER, TOO_CLOSE, "as fast as")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    role: str
    cloud_for: str
    source_sha256: str
    source_size: int
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    layout: str
    num_classes: int
    preprocessing: dict[str, Any]
    labels: tuple[str, ...]
    validation_sha256: str
    calibration_sha256: str
    build_status: str
    variants_built: int
    created_ms: int
    rebuilt_from: int = 0  # the version whose sources a `model build --rebuild` built again
    serving_plan: ServingPlan | None = None  # a cloud model the controller serves: how

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class VariantView:
    variant_id: str
    variant: str
    runtime: str
    precision: str
    status: str
    reason: str
    sha256: str
    file: str
    size_bytes: int
    zstd_bytes: int
    metrics: dict[str, Any]
    metadata: dict[str, Any]

    def latency(self) -> tuple[float, float]:
        """(median, p95) ms at the most threads measured; (0, 0) when not measured."""
        lat = self.metrics.get("latency") or {}
        if not lat:
            return 0.0, 0.0
        best = lat[max(lat, key=int)]
        return float(best["median_ms"]), float(best["p95_ms"])


@dataclass(frozen=True)
class SelectionView:
    profile: str
    variant: str
    variant_id: str
    latency_ms: float | None
    latency_source: str
    rejected: dict[str, str]
    candidates: tuple[str, ...]
    target_path: str


@dataclass(frozen=True)
class VariantsReport:
    model: ModelInfo
    source_accuracy: float
    variants: list[VariantView]
    selections: list[SelectionView]


@dataclass(frozen=True)
class SelectedVariant:
    """What a device of a profile should run for a model version (for rollouts)."""

    variant_id: str
    target_path: str
    sha256: str
    size: int
    metadata: VariantMetadata


@dataclass(frozen=True)
class CloudModelInfo:
    """The cloud model serving an edge model, materialised as a local ONNX file."""

    name: str
    version: int
    onnx_path: Path
    preprocessing: Preprocessing
    labels: tuple[str, ...]


@dataclass(frozen=True)
class BenchCandidate:
    variant_id: str
    model: str
    version: int
    variant: str
    runtime: str
    precision: str
    target_path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BenchResult:
    variant_id: str
    ok: bool
    median_ms: float = 0.0
    p95_ms: float = 0.0
    error: str = ""


@dataclass
class BuildRequest:
    name: str
    version: int = 0  # 0 = latest
    profiles: tuple[str, ...] = ()  # empty = all
    include_tflite: bool = True
    only: tuple[str, ...] = ()
    measure_runs: int = 0
    rebuild: bool = False  # build the version's sources as the next version (releases never change)
    training_sha256: str = ""  # training frames (.npz x, y) for the trained variants; "" = none
    extra: dict[str, Any] = field(default_factory=dict)


def model_info(row: ModelRow, variants_built: int = 0) -> ModelInfo:
    return ModelInfo(
        name=row.name,
        version=row.version,
        role=row.role,
        cloud_for=row.cloud_for,
        source_sha256=row.source_sha256,
        source_size=row.source_size,
        input_name=row.input_name,
        input_shape=tuple(row.input_shape),
        input_dtype=row.input_dtype,
        layout=row.layout,
        num_classes=row.num_classes,
        preprocessing=dict(row.preprocessing),
        labels=tuple(row.labels),
        validation_sha256=row.validation_sha256,
        calibration_sha256=row.calibration_sha256,
        build_status=row.build_status,
        variants_built=variants_built,
        created_ms=row.created_ms,
        rebuilt_from=int(row.rebuilt_from or 0),
    )


def variant_view(row: VariantRow) -> VariantView:
    return VariantView(
        variant_id=row.variant_id,
        variant=row.kind,
        runtime=row.runtime,
        precision=row.precision,
        status=row.status,
        reason=row.reason,
        sha256=row.artifact_sha256,
        file=row.file,
        size_bytes=row.size_bytes,
        zstd_bytes=row.zstd_bytes,
        metrics=dict(row.metrics or {}),
        metadata=dict(row.variant_metadata or {}),
    )


def selection_view(row: SelectionRow, target_path: str) -> SelectionView:
    return SelectionView(
        profile=row.profile,
        variant=row.variant_id.rsplit(":", 1)[-1] if row.variant_id else "",
        variant_id=row.variant_id,
        latency_ms=row.latency_ms,
        latency_source=row.latency_source,
        rejected=dict(row.rejected or {}),
        candidates=tuple(row.candidates or ()),
        target_path=target_path,
    )


def candidates_of(selection: Selection) -> list[str]:
    """Variants the profile can run: the chosen one and those that lost only on speed/size."""
    lost = [v for v, why in selection.rejected.items() if why.startswith(_LOST_ON_SPEED)]
    return ([selection.variant] if selection.variant else []) + sorted(lost)


def evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    """Inverse of ``Evaluation.to_dict`` (latency keys back to ints, derived fields dropped);
    metrics stored before latency rounds existed load with no interval; what is stored beside
    them (the cloud table of controller.services.cloud_tables, a trained variant's training
    record) is not part of it."""
    known = {f.name for f in fields(Evaluation)}
    return Evaluation.from_dict({k: v for k, v in data.items() if k in known})
