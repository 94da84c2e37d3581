"""FleetAdminService: the operator's live view of fleet inference (thin: decode, call, encode)."""

from __future__ import annotations

import json
import time

import grpc

from controller.monitoring.estimate import AccuracyEstimate
from controller.services.audit_rates import AuditRates
from controller.services.devices import DeviceRegistry
from controller.services.fleet import (
    DEFAULT_WINDOW_S,
    DeviceInferenceView,
    fleet_page,
    fleet_status,
)
from controller.services.frame_labels import Frame, FrameLabels
from controller.services.offload import OffloadPairs
from controller.services.telemetry import TelemetryStore
from edgefleet.errors import FailedPrecondition, InvalidInput
from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc

MAX_WINDOW_S = 7 * 86400
MAX_FLEET_PAGE = 5000  # devices one FleetStatus page may ask for
MAX_FRAMES_LISTED = 1000
DEFAULT_FRAMES_LISTED = 100


def _evidence_json(acc: AccuracyEstimate) -> str:
    ev = acc.evidence
    data = {
        "headline": acc.headline,
        "pairs": [acc.pairs_value, acc.pairs_low, acc.pairs_high],
        "cbpe": [acc.cbpe_value, acc.cbpe_low, acc.cbpe_high],
        "frames_share": dict(ev.frames_share) if ev else {},
        "variance_share": dict(ev.variance_share) if ev else {},
        "validation_frames": ev.validation_frames if ev else 0,
    }
    return json.dumps(data, sort_keys=True)


def view_to_proto(v: DeviceInferenceView, audit_fraction: float = 0.0) -> fleet_pb2.DeviceInference:
    m = v.metrics
    acc = m.accuracy
    ev = acc.evidence
    return fleet_pb2.DeviceInference(
        accuracy_method=acc.headline,
        accuracy_why=acc.why,
        audit_pairs=ev.audit_pairs if ev else 0,
        offload_pairs=ev.offload_pairs if ev else 0,
        labelled_pairs=ev.labelled_pairs if ev else 0,
        has_cbpe=acc.cbpe_value is not None,
        cbpe_accuracy=acc.cbpe_value or 0.0,
        cbpe_low=acc.cbpe_low,
        cbpe_high=acc.cbpe_high,
        accuracy_evidence_json=_evidence_json(acc),
        audit_skipped_busy=m.audit_skipped_busy,
        audit_fraction=audit_fraction,
        device_id=v.device_id,
        name=v.name,
        online=v.online,
        last_seen_unix_ms=v.last_seen_ms,
        last_report_unix_ms=v.last_report_ms,
        model=v.model,
        variant_id=v.variant_id,
        frames=m.frames,
        frames_per_second=m.frames_per_s or 0.0,
        has_latency=m.p50_latency_ms is not None,
        p50_latency_ms=m.p50_latency_ms or 0.0,
        p95_latency_ms=m.p95_latency_ms or 0.0,
        offload_rate=m.offload_rate or 0.0,
        offload_failure_rate=m.offload_failure_rate or 0.0,
        has_accuracy=acc.value is not None,
        accuracy=acc.value or 0.0,
        accuracy_low=acc.low,
        accuracy_high=acc.high,
        agreement_pairs=m.agreement_pairs,
        agreement=m.agreement or 0.0,
        reports=m.reports,
        bad_frames=m.bad_frames,
        reports_dropped=m.reports_dropped,
        cloud_pairs=v.cloud_pairs,
        skipped_frames=m.skipped,
    )


def frame_to_proto(f: Frame, names: list[str]) -> fleet_pb2.LabelledFrame:
    def name(i: int | None) -> str:
        return names[i] if i is not None and 0 <= i < len(names) else ""

    return fleet_pb2.LabelledFrame(
        frame_key=f.key, device_id=f.device_id, model=f.model, edge_variant_id=f.edge_variant_id,
        frame_id=f.frame_id, seen_unix_ms=f.seen_ms, edge_label=f.edge_label,
        edge_confidence=f.edge_confidence, cloud_label=f.cloud_label,
        cloud_confidence=f.cloud_confidence, audit=f.audit, labelled=f.label is not None,
        label=f.label if f.label is not None else 0, labelled_unix_ms=f.labelled_ms,
        edge_label_name=name(f.edge_label), cloud_label_name=name(f.cloud_label),
        label_name=name(f.label),
    )  # fmt: skip


class FleetAdminServicer(fleet_pb2_grpc.FleetAdminServiceServicer):
    def __init__(
        self,
        registry: DeviceRegistry,
        store: TelemetryStore,
        pairs: OffloadPairs | None = None,
        *,
        labels: FrameLabels | None = None,
        audit_rates: AuditRates | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._pairs = pairs
        self._labels = labels
        self._audit_rates = audit_rates

    def FleetStatus(
        self, request: fleet_pb2.FleetStatusRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.FleetStatusResponse:
        window = request.window_seconds or DEFAULT_WINDOW_S
        if not 0 < window <= MAX_WINDOW_S:
            raise InvalidInput(f"window_seconds must be in 1..{MAX_WINDOW_S}")
        if not 0 <= request.page_size <= MAX_FLEET_PAGE:
            raise InvalidInput(f"page_size must be in 0..{MAX_FLEET_PAGE}")
        selector = dict(request.label_selector)
        next_token = ""
        if request.page_size:
            page = fleet_page(self._registry, self._store, self._pairs, selector, window,
                              after=request.page_token, limit=request.page_size)  # fmt: skip
            views, next_token = page.views, page.next_after
        else:
            views = fleet_status(self._registry, self._store, self._pairs, selector, window)
        return fleet_pb2.FleetStatusResponse(
            devices=[view_to_proto(v, self._fraction(v.device_id)) for v in views],
            window_seconds=window,
            unix_ms=int(time.time() * 1000),
            next_page_token=next_token,
        )

    def _fraction(self, device_id: str) -> float:
        return self._audit_rates.fraction(device_id) if self._audit_rates is not None else 0.0

    def _frame_labels(self) -> FrameLabels:
        if self._labels is None:
            raise FailedPrecondition("this controller keeps no frames for labelling")
        return self._labels

    def ListFrames(
        self, request: fleet_pb2.ListFramesRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.ListFramesResponse:
        labels = self._frame_labels()
        limit = request.limit or DEFAULT_FRAMES_LISTED
        if not 0 < limit <= MAX_FRAMES_LISTED:
            raise InvalidInput(f"limit must be in 1..{MAX_FRAMES_LISTED}")
        if request.labelled:
            frames = labels.labelled(request.device_id, limit)
        else:
            frames = labels.awaiting(request.device_id, limit)
        names: dict[str, list[str]] = {}
        out = []
        for f in frames:
            if f.model not in names:
                names[f.model] = labels.class_names(f.model)
            out.append(frame_to_proto(f, names[f.model]))
        return fleet_pb2.ListFramesResponse(frames=out)

    def LabelFrame(
        self, request: fleet_pb2.LabelFrameRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.LabelFrameResponse:
        labels = self._frame_labels()
        if not request.frame_key or len(request.frame_key) > 600:
            raise InvalidInput("frame_key must be DEVICE/FRAME_ID, at most 600 characters")
        if not request.label.strip() or len(request.label) > 256:
            raise InvalidInput("label must be a class name or index")
        frame = labels.label(request.frame_key, request.label)
        return fleet_pb2.LabelFrameResponse(
            frame=frame_to_proto(frame, labels.class_names(frame.model))
        )
