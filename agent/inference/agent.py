"""The inference loop: local model, calibrated confidence, offload decision, cloud fallback."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.inference.offload import CloudAnswer, OffloadClient, OffloadFailed, OffloadFrame
from agent.inference.policy import AuditSampler, OffloadPolicy
from agent.runtime.errors import BadFrame, RuntimeFailure
from agent.runtime.model import LoadedModel
from agent.runtime.skipper import FrameSkipper
from agent.telemetry.aggregator import TelemetryAggregator
from edgefleet.confidence import calibrated_probabilities, confidence_function

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    model_name: str = ""  # task name the controller maps to its cloud model; "" = metadata.model
    offload_deadline_s: float = 0.25
    max_in_flight: int = 8  # concurrent offloads; beyond it frames keep their local answer
    audit_fraction: float = 0.02
    seed: int | None = None  # the audit sampler's; None: from the OS (each device its own)
    confidence_metric: str = "max_softmax"  # max_softmax | margin | entropy
    wait_for_offload: bool = True  # False: hard frames also return the local answer at once
    deadline_grace_s: float = 0.02


@dataclass(frozen=True)
class Result:
    frame_id: str
    label: int
    label_name: str
    confidence: float
    source: str  # "edge" | "cloud"
    variant_id: str  # the edge variant that ran locally
    model_id: str  # the model that produced `label` (edge variant id or cloud model id)
    edge_label: int
    edge_confidence: float
    local_ms: float
    offload_ms: float | None
    total_ms: float
    offloaded: bool
    audited: bool = False
    offload_error: str | None = None


@dataclass(frozen=True)
class FrameFailed:
    """The model failed on a frame (its runtime raised, or it answered NaN/inf)."""

    frame_id: str
    variant_id: str
    error: str


InferenceEvent = Result | FrameFailed
InferenceListener = Callable[[InferenceEvent], None]


class ModelSource(Protocol):
    """Where each frame takes its model from (a ModelHolder, or the agent's ActiveModel)."""

    def current(self) -> LoadedModel: ...


def _label_name(model: LoadedModel, label: int) -> str:
    labels = model.metadata.labels
    return labels[label] if 0 <= label < len(labels) else str(label)


class Agent:
    """`infer(frame)` answers one frame; `run(frames)` answers a stream, skipping bad frames
    and turning model failures into `FrameFailed` events (counted as inference errors).

    Offloads run on a bounded thread pool. A hard frame waits for the cloud at most the
    deadline, then keeps its local answer (the failure is counted). Audit frames (and hard
    frames when `wait_for_offload` is False) return the local answer at once; the cloud
    answer is recorded as a labelled pair when it arrives.
    """

    def __init__(
        self,
        holder: ModelSource,
        policy: OffloadPolicy,
        client: OffloadClient | None = None,
        telemetry: TelemetryAggregator | None = None,
        config: AgentConfig | None = None,
    ) -> None:
        self.holder = holder
        self.policy = policy
        self.client = client
        self.telemetry = telemetry
        self.config = config or AgentConfig()
        self._confidence = confidence_function(self.config.confidence_metric)
        self._max_softmax = self.config.confidence_metric == "max_softmax"
        self.audit = AuditSampler(self.config.audit_fraction, self.config.seed)
        self._failures = 0
        self._slots = threading.BoundedSemaphore(self.config.max_in_flight)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.max_in_flight, thread_name_prefix="offload"
        )
        if telemetry is not None and (model := _peek(holder)) is not None:
            telemetry.set_model(model.metadata.model, model.metadata.variant_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(
        self, frames: Iterable[tuple[str, np.ndarray]], skipper: FrameSkipper | None = None
    ) -> Iterator[InferenceEvent]:
        """Answer each frame; near-duplicates (skipper) and bad frames are counted and skipped;
        a frame the model fails on becomes a `FrameFailed` (counted as an inference error)."""
        for frame_id, frame in frames:
            if skipper is not None and skipper.should_skip(frame):
                if self.telemetry is not None:
                    self.telemetry.record_skipped()
                continue
            try:
                yield self.infer(frame, frame_id)
            except BadFrame as exc:
                log.warning("skipping bad frame %s: %s", frame_id, exc)
            except RuntimeFailure as exc:
                yield self._frame_failed(frame_id, exc)

    def _frame_failed(self, frame_id: str, exc: RuntimeFailure) -> FrameFailed:
        if self.telemetry is not None:
            self.telemetry.record_error("inference")
        variant = _peek(self.holder)
        self._failures += 1
        if self._failures in (1, 10, 100) or self._failures % 1000 == 0:  # bounded logging
            log.warning("inference failed on frame %s (%d so far): %s", frame_id,
                        self._failures, exc)  # fmt: skip
        return FrameFailed(frame_id, variant.metadata.variant_id if variant else "", str(exc))

    def infer(self, frame: np.ndarray, frame_id: str = "") -> Result:
        start = time.perf_counter()
        model = self.holder.current()  # one model per frame, even across a swap
        meta = model.metadata
        try:
            output = model.infer_frame(frame)
        except BadFrame:
            if self.telemetry is not None:
                self.telemetry.record_bad_frame()
            raise
        if not math.isfinite(output.sum(dtype=np.float64)):  # NaN or +-inf anywhere
            raise RuntimeFailure(f"{meta.variant_id} answered NaN or infinite values")
        if self._max_softmax:
            edge_label, edge_confidence = top_softmax(
                output, meta.temperature, meta.outputs_are_logits
            )
        else:
            probabilities = calibrated_probabilities(
                output, meta.temperature, meta.outputs_are_logits
            )
            edge_label = int(np.argmax(probabilities))
            edge_confidence = self._confidence(probabilities)
        local_ms = (time.perf_counter() - start) * 1000.0

        hard = self.client is not None and self.policy.should_offload(edge_confidence)
        audit = not hard and self.client is not None and self.audit.should_audit()
        result = Result(
            frame_id=frame_id,
            label=edge_label,
            label_name=_label_name(model, edge_label),
            confidence=edge_confidence,
            source="edge",
            variant_id=meta.variant_id,
            model_id=meta.variant_id,
            edge_label=edge_label,
            edge_confidence=edge_confidence,
            local_ms=local_ms,
            offload_ms=None,
            total_ms=local_ms,
            offloaded=hard,
            audited=audit,
        )
        if hard or audit:
            request = OffloadFrame(
                model=self.config.model_name or meta.model,
                edge_variant_id=meta.variant_id,
                frame_id=frame_id,
                frame=frame,
                edge_label=edge_label,
                edge_confidence=edge_confidence,
                audit=audit,
            )
            result = self._offload(model, request, result, start, wait=hard and self._waits())
        if self.telemetry is not None:
            self.telemetry.record_frame(
                local_ms=result.local_ms,
                end_to_end_ms=result.total_ms,
                confidence=edge_confidence,
                offloaded=hard,
                offload_failed=result.offload_error is not None,
                offload_rtt_ms=result.offload_ms,
                audited=result.audited,
            )
        return result

    def _waits(self) -> bool:
        return self.config.wait_for_offload

    def _offload(
        self,
        model: LoadedModel,
        request: OffloadFrame,
        result: Result,
        start: float,
        wait: bool,
    ) -> Result:
        assert self.client is not None
        if not self._slots.acquire(blocking=False):
            if request.audit:  # skipped, counted apart: not a failed offload
                if self.telemetry is not None:
                    self.telemetry.record_audit_skipped_busy()
                return _replace(result, audited=False)
            return self._failed(result, start, "busy")
        self.policy.record_offload_bytes(int(np.asarray(request.frame).nbytes))
        deadline = self.config.offload_deadline_s
        try:
            future = self._pool.submit(self.client.offload, request, deadline)
        except RuntimeError:  # pool shut down
            self._slots.release()
            if request.audit:
                return _replace(result, audited=False)
            return self._failed(result, start, "closed")
        future.add_done_callback(lambda _f: self._slots.release())
        if not wait:
            future.add_done_callback(lambda f: self._record_late(request, f))
            return result
        remaining = deadline + self.config.deadline_grace_s - (time.perf_counter() - start)
        try:
            answer = future.result(timeout=max(0.0, remaining))
        except OffloadFailed as exc:
            return self._failed(result, start, exc.kind)
        except concurrent.futures.TimeoutError:
            return self._failed(result, start, "deadline")
        except Exception as exc:  # a client bug must not stop the frame loop
            log.exception("offload client raised unexpectedly")
            return self._failed(result, start, type(exc).__name__)
        self._record_pair(request, answer)
        label = answer.label
        return _replace(
            result,
            label=label,
            label_name=answer.label_name or _label_name(model, label),
            confidence=answer.confidence,
            source="cloud",
            model_id=answer.model_id,
            offload_ms=answer.round_trip_ms,
            total_ms=(time.perf_counter() - start) * 1000.0,
        )

    def _failed(self, result: Result, start: float, kind: str) -> Result:
        if self.telemetry is not None:
            self.telemetry.record_error(f"offload_{kind}")
        return _replace(result, offload_error=kind, total_ms=(time.perf_counter() - start) * 1000.0)

    def _record_pair(self, request: OffloadFrame, answer: CloudAnswer) -> None:
        if self.telemetry is not None:
            self.telemetry.record_pair(request.edge_label, answer.label, request.audit)

    def _record_late(
        self, request: OffloadFrame, future: concurrent.futures.Future[CloudAnswer]
    ) -> None:
        """Completion of an offload nobody waited for (audit or async mode)."""
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            answer = future.result()
            if self.telemetry is not None:
                self.telemetry.record_offload_rtt(answer.round_trip_ms)
            self._record_pair(request, answer)
        elif self.telemetry is not None:
            kind = exc.kind if isinstance(exc, OffloadFailed) else type(exc).__name__
            if request.audit:
                self.telemetry.record_error(f"audit_{kind}")
            else:
                self.telemetry.record_offload_failure(kind)


def top_softmax(
    output: np.ndarray, temperature: float, outputs_are_logits: bool
) -> tuple[int, float]:
    """(argmax, max) of ``calibrated_probabilities(output, ...)``, bit for bit, in fewer
    array operations: the top probability is exp(0) / sum = 1 / sum (float32 outputs keep
    their order through the float64 softmax, so the argmax is the logits')."""
    x = output.astype(np.float64).reshape(-1)
    if not outputs_are_logits:
        x = np.log(np.clip(x, 1e-12, None))
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if temperature != 1.0:
        x /= temperature
    label = int(x.argmax())
    x -= x[label]
    np.exp(x, out=x)
    return label, float(1.0 / x.sum())


def _peek(holder: ModelSource) -> LoadedModel | None:
    """The holder's model, or None while it has none yet (an agent waiting for OTA)."""
    try:
        return holder.current()
    except LookupError:
        return None


def _replace(result: Result, **changes: object) -> Result:
    import dataclasses

    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]
