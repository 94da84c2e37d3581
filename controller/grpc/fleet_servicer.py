"""FleetAdminService: the operator's live view of fleet inference (thin: decode, call, encode)."""

from __future__ import annotations

import time

import grpc

from controller.services.devices import DeviceRegistry
from controller.services.fleet import DEFAULT_WINDOW_S, DeviceInferenceView, fleet_status
from controller.services.offload import OffloadPairs
from controller.services.telemetry import TelemetryStore
from edgefleet.errors import InvalidInput
from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc

MAX_WINDOW_S = 7 * 86400


def view_to_proto(v: DeviceInferenceView) -> fleet_pb2.DeviceInference:
    m = v.metrics
    acc = m.accuracy
    return fleet_pb2.DeviceInference(
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


class FleetAdminServicer(fleet_pb2_grpc.FleetAdminServiceServicer):
    def __init__(
        self, registry: DeviceRegistry, store: TelemetryStore, pairs: OffloadPairs | None = None
    ) -> None:
        self._registry = registry
        self._store = store
        self._pairs = pairs

    def FleetStatus(
        self, request: fleet_pb2.FleetStatusRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.FleetStatusResponse:
        window = request.window_seconds or DEFAULT_WINDOW_S
        if not 0 < window <= MAX_WINDOW_S:
            raise InvalidInput(f"window_seconds must be in 1..{MAX_WINDOW_S}")
        views = fleet_status(
            self._registry, self._store, self._pairs, dict(request.label_selector), window
        )
        return fleet_pb2.FleetStatusResponse(
            devices=[view_to_proto(v) for v in views],
            window_seconds=window,
            unix_ms=int(time.time() * 1000),
        )
