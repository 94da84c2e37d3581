"""ModelAdminService (operator) — thin: decode, call the model catalogue or the build runner,
encode."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import grpc

from controller.artifacts import ArtifactStore
from controller.grpc.hard_examples_servicer import FleetLoop, HardExampleRpcs
from controller.grpc.serving_plans import plan_to_proto
from controller.services.model_build import BuildRunner
from controller.services.model_training import DistillRequest, TrainingRunner
from controller.services.model_views import BuildRequest, ModelInfo, VariantsReport
from controller.services.models import ModelCatalogue
from controller.services.models_setup import ModelComponents
from controller.serving.plan import ServingPlan
from edgefleet.errors import DeadlineExceeded, EdgeFleetError, FailedPrecondition
from edgefleet.profiles import HardwareProfile
from edgefleet.v1 import models_pb2, models_pb2_grpc

log = logging.getLogger(__name__)
MAX_EVENTS = 4096  # progress events buffered per build call
TRAINING_GRACE_S = 60.0  # past a training run's bound, for its own TrainingTimedOut to arrive
ServingPlans = Callable[[str], ServingPlan | None]  # NAME:VERSION -> its plan, if served


def model_to_proto(info: ModelInfo) -> models_pb2.ModelVersion:
    plan = plan_to_proto(info.serving_plan, info.cloud_for) if info.serving_plan else None
    return models_pb2.ModelVersion(
        name=info.name,
        version=info.version,
        role=info.role,
        cloud_for=info.cloud_for,
        source_sha256=info.source_sha256,
        source_size=info.source_size,
        input_name=info.input_name,
        input_shape=list(info.input_shape),
        input_dtype=info.input_dtype,
        layout=info.layout,
        num_classes=info.num_classes,
        preprocess_json=json.dumps(info.preprocessing, sort_keys=True),
        labels=list(info.labels),
        build_status=info.build_status,
        variants_built=info.variants_built,
        created_unix_ms=info.created_ms,
        rebuilt_from=info.rebuilt_from,
        serving_plan=plan,
    )


def variants_to_proto(report: VariantsReport) -> models_pb2.ListVariantsResponse:
    out = models_pb2.ListVariantsResponse(
        model=model_to_proto(report.model), source_accuracy=report.source_accuracy
    )
    for v in report.variants:
        median, p95 = v.latency()
        m = v.metrics
        out.variants.add(
            variant_id=v.variant_id,
            variant=v.variant,
            runtime=v.runtime,
            precision=v.precision,
            status=v.status,
            reason=v.reason,
            sha256=v.sha256,
            size_bytes=v.size_bytes,
            zstd_bytes=v.zstd_bytes,
            latency_median_ms=median,
            latency_p95_ms=p95,
            accuracy=float(m.get("accuracy", 0.0)),
            accuracy_drop_pp=float(m.get("accuracy_drop_pp", 0.0)),
            agreement=float(m.get("agreement", 0.0)),
            ece=float(m.get("ece", 0.0)),
            temperature=float(m.get("temperature", 0.0)),
            metrics_json=json.dumps(m, sort_keys=True),
        )
    for s in report.selections:
        out.selections.add(
            profile=s.profile,
            variant=s.variant,
            variant_id=s.variant_id,
            latency_ms=s.latency_ms or 0.0,
            latency_source=s.latency_source,
            rejected=s.rejected,
            target_path=s.target_path,
        )
    return out


class _Chunks:
    """A binary reader over the request stream, for ``ArtifactStore.put_stream``."""

    def __init__(self, chunks: Iterator[models_pb2.UploadArtifactChunk]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.expected = ""
        self._first = True

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            if self._first:
                self.expected, self._first = chunk.expected_sha256, False
            self._buffer += chunk.data
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


class ModelAdminServicer(HardExampleRpcs, models_pb2_grpc.ModelAdminServiceServicer):
    def __init__(
        self,
        models: ModelCatalogue,
        builds: BuildRunner,
        store: ArtifactStore,
        serving_plans: ServingPlans = lambda _ref: None,
        training: TrainingRunner | None = None,
        fleet_loop: FleetLoop | None = None,
    ) -> None:
        self._models, self._builds, self._store = models, builds, store
        self._serving_plans = serving_plans
        self._training = training
        self._fleet_loop = fleet_loop  # hard examples and retrain (HardExampleRpcs)

    def _with_plan(self, info: ModelInfo) -> ModelInfo:
        plan = self._serving_plans(info.ref) if info.role == "cloud" else None
        return replace(info, serving_plan=plan) if plan is not None else info

    def UploadArtifact(
        self,
        request_iterator: Iterator[models_pb2.UploadArtifactChunk],
        context: grpc.ServicerContext,
    ) -> models_pb2.UploadArtifactResponse:
        reader = _Chunks(request_iterator)
        reader.read(0)  # pull the first chunk to learn the expected digest
        ref = self._store.put_stream(reader, reader.expected or None)  # type: ignore[arg-type]
        return models_pb2.UploadArtifactResponse(sha256=ref.sha256, size=ref.size)

    def AddModel(
        self, request: models_pb2.AddModelRequest, context: grpc.ServicerContext
    ) -> models_pb2.AddModelResponse:
        info = self._models.add_model(
            request.name,
            request.onnx_sha256,
            request.validation_sha256,
            request.calibration_sha256,
            list(request.labels),
            request.preprocess_json,
            request.cloud_for,
        )
        return models_pb2.AddModelResponse(model=model_to_proto(info))

    def BuildModel(
        self, request: models_pb2.BuildModelRequest, context: grpc.ServicerContext
    ) -> Iterator[models_pb2.BuildModelEvent]:
        build = BuildRequest(
            name=request.name,
            version=request.version,
            profiles=tuple(request.profiles),
            include_tflite=not request.no_tflite,
            only=tuple(request.only_variants),
            measure_runs=request.measure_runs,
            rebuild=request.rebuild,
            training_sha256=request.training_sha256,
        )
        self._builds.check(build)  # bad input fails before streaming
        events: queue.Queue[tuple[str, Any]] = queue.Queue(MAX_EVENTS)
        count = 0

        def progress(variant: str, phase: str) -> None:
            # a slow reader loses progress lines, never the result
            with contextlib.suppress(queue.Full):
                events.put_nowait(("progress", (variant, phase)))

        def work() -> None:
            try:
                report = self._builds.build(build, progress)
                events.put(("report", report.to_json()))
            except BaseException as exc:
                events.put(("error", exc))

        threading.Thread(target=work, name=f"build-{request.name}", daemon=True).start()
        while True:
            kind, value = events.get()
            if kind == "progress":
                count += 1
                yield models_pb2.BuildModelEvent(
                    progress=models_pb2.BuildProgress(variant=value[0], phase=value[1], index=count)
                )
            elif kind == "report":
                yield models_pb2.BuildModelEvent(report_json=value)
                return
            else:
                if isinstance(value, EdgeFleetError):
                    raise value
                log.error("build of %s failed", request.name, exc_info=value)
                raise EdgeFleetError(f"build failed: {type(value).__name__}: {value}")

    def DistillModel(
        self, request: models_pb2.DistillModelRequest, context: grpc.ServicerContext
    ) -> Iterator[models_pb2.TrainingEvent]:
        runner = self._training
        if runner is None:
            raise FailedPrecondition("this controller runs no training stages")
        distill = distill_request(request)
        runner.check(distill)  # bad input fails before streaming
        cancel = threading.Event()
        context.add_callback(cancel.set)  # the client went away (or the call ended)
        yield from _stream_training(
            lambda progress: runner.distill(distill, progress, cancel),
            cancel,
            distill.max_seconds,
            f"distill-{distill.target}",
        )

    def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        return models_pb2.ListModelsResponse(
            models=[model_to_proto(self._with_plan(m)) for m in self._models.list_models()]
        )

    def ListVariants(
        self, request: models_pb2.ListVariantsRequest, context: grpc.ServicerContext
    ) -> models_pb2.ListVariantsResponse:
        report = self._models.variants(request.name, request.version)
        return variants_to_proto(replace(report, model=self._with_plan(report.model)))


def distill_request(request: models_pb2.DistillModelRequest) -> DistillRequest:
    """The domain request; zero numbers mean the defaults (alpha only when alpha_set)."""
    defaults = DistillRequest(teacher="")
    return DistillRequest(
        teacher=request.teacher,
        teacher_version=request.teacher_version,
        student=request.student,
        data_sha256=request.data_sha256,
        name=request.name,
        temperature=request.temperature or defaults.temperature,
        alpha=request.alpha if request.alpha_set else defaults.alpha,
        epochs=request.epochs or defaults.epochs,
        batch_size=request.batch_size or defaults.batch_size,
        max_seconds=request.max_seconds or defaults.max_seconds,
        extra_data_sha256=tuple(request.extra_data_sha256),
        init_from_version=request.init_from_version,
    )


TrainingWork = Callable[[Callable[[str, float, str], None]], Any]  # progress -> report


def _stream_training(
    work: TrainingWork, cancel: threading.Event, max_seconds: float, thread_name: str
) -> Iterator[models_pb2.TrainingEvent]:
    """Run ``work`` on a thread and stream its progress, then one event with its report's
    JSON; its errors are raised here (the shared table maps them to status codes). The run
    is cancelled past ``max_seconds`` (plus a grace for the run's own bound to answer)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue(MAX_EVENTS)

    def progress(phase: str, fraction: float, message: str) -> None:
        with contextlib.suppress(queue.Full):  # a slow reader loses progress, never the result
            events.put_nowait(("progress", (phase, fraction, message)))

    def run() -> None:
        try:
            events.put(("report", work(progress).to_json()))
        except BaseException as exc:
            events.put(("error", exc))

    threading.Thread(target=run, name=thread_name, daemon=True).start()
    deadline = time.monotonic() + max_seconds + TRAINING_GRACE_S
    while True:
        try:
            kind, value = events.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            cancel.set()
            raise DeadlineExceeded(
                f"training passed its bound of {max_seconds:.0f} s: cancelled, nothing registered"
            ) from None
        if kind == "progress":
            phase, fraction, message = value
            yield models_pb2.TrainingEvent(
                progress=models_pb2.TrainingProgress(
                    phase=phase, fraction=fraction, message=message
                )
            )
        elif kind == "report":
            yield models_pb2.TrainingEvent(report_json=value)
            return
        else:
            if isinstance(value, EdgeFleetError):
                raise value
            log.error("training run %s failed", thread_name, exc_info=value)
            raise EdgeFleetError(f"training failed: {type(value).__name__}: {value}")


def add_model_services(
    server: grpc.Server,
    parts: ModelComponents,
    profiles: Iterable[HardwareProfile],
    serving_plans: ServingPlans = lambda _ref: None,
    training: TrainingRunner | None = None,
    fleet_loop: FleetLoop | None = None,
) -> None:
    """Register ModelAdminService and the device-facing UpdateService."""
    from controller.grpc.updates_servicer import UpdateServicer
    from edgefleet.v1 import updates_pb2_grpc

    models_pb2_grpc.add_ModelAdminServiceServicer_to_server(
        ModelAdminServicer(
            parts.models, parts.builds, parts.store, serving_plans, training, fleet_loop
        ),
        server,
    )
    threads = {p.name: p.threads for p in profiles}
    updates = UpdateServicer(
        parts.benchmarks, parts.releases, parts.store, threads,
        url_lifetime_s=parts.artifact_url_lifetime_s, traffic=parts.artifact_traffic,
    )  # fmt: skip
    updates_pb2_grpc.add_UpdateServiceServicer_to_server(updates, server)
