"""Build every variant of a source model, measure each, select one per hardware profile.

    report = build_model(source, BUILTIN_PROFILES, workdir, progress=print)
    report.selections["x86-64-vnni"].variant      # e.g. "onnx-int8-static"
    json.dumps(report.to_dict())

Each variant lands in ``workdir/<variant>/`` as the model file plus ``variant.json``. A variant
that cannot be produced here is reported as skipped with the reason; the build goes on.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.optimize.errors import VariantUnavailable
from controller.optimize.evaluate import (
    Evaluation,
    MeasureConfig,
    Reference,
    evaluate_variant,
    reference,
)
from controller.optimize.onnx_variants import VariantSpec, build_int8_mixed, onnx_variant_specs
from controller.optimize.openvino_variants import openvino_variant_specs
from controller.optimize.runners import finalize_variant
from controller.optimize.select import Selection, select_variants
from controller.optimize.source import SourceModel
from controller.optimize.tflite_variants import (
    TFLITE_NOT_REQUESTED,
    Onnx2TfConfig,
    Onnx2TfConversion,
    tflite_variant_specs,
)
from controller.optimize.trained_variants import (
    QAT,
    TrainedOptions,
    TrainingContext,
    qat_spec,
    structured_specs,
)
from edgefleet.modelmeta import VariantMetadata
from edgefleet.profiles import HardwareProfile

log = logging.getLogger(__name__)

Progress = Callable[[str, str], None]
BUILT, SKIPPED, FAILED = "built", "skipped", "failed"
MIXED = "onnx-int8-mixed"


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of a build; the defaults build everything and measure lightly."""

    measure: MeasureConfig = field(default_factory=MeasureConfig)
    onnx2tf: Onnx2TfConfig = field(default_factory=Onnx2TfConfig)
    only: tuple[str, ...] = ()  # build just these variants (empty: all)
    mixed: str = "auto"  # auto (when full int8 misses budget)|always|never
    static_reduce_range: tuple[bool, ...] = (False, True)
    prune_percents: tuple[int, ...] = (50, 75, 90)
    cluster_counts: tuple[int, ...] = (16, 32, 64)
    calibration_limit: int = 128
    accuracy_budget_pp: float | None = None  # overrides the profiles' own budgets
    keep_failed_dirs: bool = False
    # QAT, channel-pruned and reduced-resolution variants (controller.optimize.trained_variants)
    trained: TrainedOptions = field(default_factory=TrainedOptions)


@dataclass
class VariantResult:
    variant: str
    runtime: str
    precision: str
    status: str  # built | skipped | failed
    reason: str = ""
    directory: str = ""
    metadata: VariantMetadata | None = None
    evaluation: Evaluation | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "runtime": self.runtime,
            "precision": self.precision,
            "status": self.status,
            "reason": self.reason,
            "directory": self.directory,
            "metadata": self.metadata.to_dict() if self.metadata else None,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
        }


@dataclass
class BuildReport:
    model: str
    version: int
    source_accuracy: float
    results: list[VariantResult]
    selections: dict[str, Selection]

    def result(self, variant: str) -> VariantResult:
        return next(r for r in self.results if r.variant == variant)

    def built(self) -> list[VariantResult]:
        return [r for r in self.results if r.status == BUILT]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "source_accuracy": self.source_accuracy,
            "results": [r.to_dict() for r in self.results],
            "selections": {name: s.to_dict() for name, s in self.selections.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _no_progress(variant: str, phase: str) -> None:
    del variant, phase


class _Builder:
    """One build's state: runs specs, evaluates what was built, records the rest."""

    def __init__(
        self,
        source: SourceModel,
        workdir: Path,
        options: BuildOptions,
        thread_counts: tuple[int, ...],
        progress: Progress,
    ) -> None:
        self.source, self.workdir, self.options = source, workdir, options
        self.thread_counts, self.progress = thread_counts, progress
        self.ref: Reference = reference(source, options.measure)
        self.results: list[VariantResult] = []

    def run(self, spec: VariantSpec) -> VariantResult:
        out_dir = self.workdir / spec.name
        result = VariantResult(
            spec.name, spec.runtime, spec.precision, FAILED, directory=str(out_dir)
        )
        self.progress(spec.name, "build")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            meta = spec.build(self.source, out_dir)
            self.progress(spec.name, "evaluate")
            evaluation = evaluate_variant(
                meta, out_dir, self.source, self.ref, self.options.measure, self.thread_counts
            )
        except VariantUnavailable as exc:
            result.status, result.reason = SKIPPED, str(exc)
        except Exception as exc:  # one broken variant must not sink the build
            log.exception("variant %s of %s failed", spec.name, self.source.name)
            result.reason = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            )
        else:
            calibrated = replace(
                meta,
                temperature=evaluation.temperature,
                extra={
                    **meta.extra,
                    "confidence_quantiles": evaluation.confidence_quantiles,
                    "confidence_histogram": evaluation.confidence_histogram,
                },
            )
            meta = finalize_variant(out_dir, calibrated)
            result.status, result.metadata, result.evaluation = BUILT, meta, evaluation
        if result.status != BUILT:
            result.directory = ""
            if not self.options.keep_failed_dirs and out_dir.exists():
                shutil.rmtree(out_dir)
        self.progress(spec.name, result.status)
        self.results.append(result)
        return result

    def skip(self, name: str, runtime: str, precision: str, reason: str) -> None:
        self.results.append(VariantResult(name, runtime, precision, SKIPPED, reason))
        self.progress(name, SKIPPED)


def _wanted(name: str, only: Sequence[str]) -> bool:
    return not only or name in only


def build_model(
    source: SourceModel,
    profiles: Iterable[HardwareProfile],
    workdir: Path,
    *,
    progress: Progress | None = None,
    include_tflite: bool = True,
    options: BuildOptions | None = None,
    device_latencies: Mapping[str, Mapping[str, float]] | None = None,
) -> BuildReport:
    """Build, evaluate and select. ``progress(variant, phase)`` is called with the phases
    build, evaluate, then built | skipped | failed."""
    options = options or BuildOptions()
    profiles = list(profiles)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    thread_counts = tuple(p.threads for p in profiles) or options.measure.thread_counts
    builder = _Builder(source, workdir, options, thread_counts, progress or _no_progress)

    specs = onnx_variant_specs(
        static_reduce_range=options.static_reduce_range,
        prune_percents=options.prune_percents,
        cluster_counts=options.cluster_counts,
        calibration_limit=options.calibration_limit,
    )
    for spec in specs:
        if _wanted(spec.name, options.only):
            builder.run(spec)

    if _wanted(MIXED, options.only):
        _maybe_build_mixed(builder, profiles, options)

    training = TrainingContext(source, options.trained)
    if _wanted(QAT, options.only):
        _maybe_build_qat(builder, profiles, options, training)
    for spec in structured_specs(training):
        if _wanted(spec.name, options.only):
            builder.run(spec)

    for spec in openvino_variant_specs(calibration_limit=options.calibration_limit):
        if _wanted(spec.name, options.only):
            builder.run(spec)

    conversion = Onnx2TfConversion(source, options.onnx2tf)
    try:
        for spec in tflite_variant_specs(conversion):
            if not _wanted(spec.name, options.only):
                continue
            if include_tflite:
                builder.run(spec)
            else:
                builder.skip(spec.name, spec.runtime, spec.precision, TFLITE_NOT_REQUESTED)
    finally:
        conversion.close()

    evaluations = [r.evaluation for r in builder.results if r.evaluation is not None]
    selections = select_variants(
        evaluations,
        profiles,
        accuracy_budget_pp=options.accuracy_budget_pp,
        device_latencies=device_latencies,
    )
    report = BuildReport(
        model=source.name,
        version=source.version,
        source_accuracy=builder.ref.accuracy,
        results=builder.results,
        selections=selections,
    )
    (workdir / "report.json").write_text(report.to_json(), encoding="utf-8")
    return report


def _maybe_build_mixed(
    builder: _Builder, profiles: list[HardwareProfile], options: BuildOptions
) -> None:
    budget = options.accuracy_budget_pp
    if budget is None:
        budget = min((p.accuracy_budget_pp for p in profiles), default=1.0)
    statics = [
        r.evaluation
        for r in builder.results
        if r.evaluation is not None and r.variant.startswith("onnx-int8-static")
    ]
    best_drop = min((ev.accuracy_drop_pp for ev in statics), default=None)
    if options.mixed == "never":
        builder.skip(MIXED, "onnxruntime", "mixed", "mixed precision disabled")
        return
    if options.mixed == "auto" and best_drop is not None and best_drop <= budget:
        builder.skip(
            MIXED,
            "onnxruntime",
            "mixed",
            f"full int8 is within the accuracy budget ({best_drop:.2f} pp <= {budget} pp)",
        )
        return
    reduce_range = any(p.int8_reduce_range for p in profiles if "onnxruntime" in p.runtimes)

    def build(source: SourceModel, out_dir: Path) -> VariantMetadata:
        return build_int8_mixed(
            source,
            out_dir,
            reduce_range=reduce_range,
            budget_pp=budget,
            calibration_limit=min(64, options.calibration_limit),
        )

    builder.run(VariantSpec(MIXED, "onnxruntime", "mixed", build))


def _budget(profiles: list[HardwareProfile], options: BuildOptions) -> float:
    if options.accuracy_budget_pp is not None:
        return options.accuracy_budget_pp
    return min((p.accuracy_budget_pp for p in profiles), default=1.0)


def _maybe_build_qat(
    builder: _Builder,
    profiles: list[HardwareProfile],
    options: BuildOptions,
    training: TrainingContext,
) -> None:
    """QAT int8 like mixed: with ``auto``, only when the best post-training int8 (static or
    mixed, ONNX Runtime) misses the accuracy budget."""
    budget = _budget(profiles, options)
    post = [
        r.evaluation.accuracy_drop_pp
        for r in builder.results
        if r.evaluation is not None
        and r.runtime == "onnxruntime"
        and (r.variant.startswith("onnx-int8-static") or r.variant == MIXED)
    ]
    best = min(post, default=None)
    if options.trained.qat == "never":
        builder.skip(QAT, "onnxruntime", "int8", "quantization-aware training disabled")
        return
    if options.trained.qat == "auto" and best is not None and best <= budget:
        builder.skip(
            QAT,
            "onnxruntime",
            "int8",
            f"post-training int8 is within the accuracy budget ({best:.2f} pp <= {budget} pp)",
        )
        return
    builder.run(qat_spec(training, options.calibration_limit))


__all__ = [
    "BuildOptions",
    "BuildReport",
    "VariantResult",
    "build_model",
]
