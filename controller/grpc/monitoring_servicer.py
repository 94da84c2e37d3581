"""FleetAdminService's alert and event calls (thin: decode, call the logs, encode).

``FleetAdminServicer`` keeps the live status; this subclass adds ListAlerts and ListEvents
over ``controller.monitoring``'s ``AlertLog`` and ``EventLog``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc

from controller.grpc.fleet_servicer import MAX_WINDOW_S, FleetAdminServicer
from controller.monitoring.alerts import Alert, AlertLog
from controller.monitoring.events import MAX_QUERY_LIMIT, EventLog, StoredEvent
from controller.monitoring.monitor import DriftRow
from controller.services.audit_rates import AuditRates
from controller.services.devices import DeviceRegistry
from controller.services.frame_labels import FrameLabels
from controller.services.offload import OffloadPairs
from controller.services.telemetry import TelemetryStore
from edgefleet.errors import InvalidInput
from edgefleet.v1 import fleet_pb2

DEFAULT_LIMIT = 200
MAX_KINDS = 32


def alert_to_proto(a: Alert) -> fleet_pb2.Alert:
    return fleet_pb2.Alert(
        alert_id=a.alert_id,
        rule=a.rule,
        subject=a.subject,
        device_id=a.device_id,
        severity=a.severity,
        message=a.message,
        started_unix_ms=a.started_ms,
        ended_unix_ms=a.ended_ms or 0,
        active=a.active,
        evidence_json=json.dumps(dict(a.evidence), sort_keys=True),
        last_evidence_json=json.dumps(dict(a.last_evidence), sort_keys=True),
    )


def event_to_proto(e: StoredEvent) -> fleet_pb2.FleetEvent:
    return fleet_pb2.FleetEvent(
        event_id=e.event_id,
        unix_ms=e.unix_ms,
        kind=e.kind,
        device_id=e.device_id,
        subject=e.subject,
        message=e.message,
        data_json=json.dumps(dict(e.data), sort_keys=True),
    )


def drift_to_proto(row: DriftRow) -> fleet_pb2.DriftScore:
    s = row.score
    return fleet_pb2.DriftScore(
        kind=row.kind,
        subject=row.subject,
        name=row.name,
        variant_id=row.variant_id,
        devices=row.devices,
        frames=s.frames,
        confidence_frames=s.confidence_frames,
        has_psi=s.psi is not None,
        psi=s.psi or 0.0,
        has_agreement=s.agreement is not None,
        agreement=s.agreement or 0.0,
        agreement_low=s.agreement_low,
        agreement_high=s.agreement_high,
        agreement_pairs=s.agreement_pairs,
        has_expected_agreement=s.expected_agreement is not None,
        expected_agreement=s.expected_agreement or 0.0,
        offload_budget_fps=row.budget_fps,
    )


def _limit(value: int) -> int:
    if value < 0 or value > MAX_QUERY_LIMIT:
        raise InvalidInput(f"limit must be in 0..{MAX_QUERY_LIMIT} (0 = {DEFAULT_LIMIT})")
    return value or DEFAULT_LIMIT


class MonitoringFleetServicer(FleetAdminServicer):
    def __init__(
        self,
        registry: DeviceRegistry,
        store: TelemetryStore,
        pairs: OffloadPairs | None,
        *,
        alerts: AlertLog,
        events: EventLog,
        labels: FrameLabels | None = None,
        audit_rates: AuditRates | None = None,
        drift: Callable[[float | None], list[DriftRow]] | None = None,
        drift_window_s: float = 60.0,
    ) -> None:
        super().__init__(registry, store, pairs, labels=labels, audit_rates=audit_rates)
        self._registry = registry
        self._alerts = alerts
        self._events = events
        self._drift = drift  # FleetMonitor.drift_report (the monitor starts after the server)
        self._drift_window_s = drift_window_s

    def FleetDrift(
        self, request: fleet_pb2.FleetDriftRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.FleetDriftResponse:
        window = request.window_seconds or int(self._drift_window_s)
        if not 0 < window <= MAX_WINDOW_S:
            raise InvalidInput(f"window_seconds must be in 1..{MAX_WINDOW_S}")
        rows = self._drift(float(window)) if self._drift is not None else []
        return fleet_pb2.FleetDriftResponse(
            scores=[drift_to_proto(r) for r in rows], window_seconds=window
        )

    def ListAlerts(
        self, request: fleet_pb2.ListAlertsRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.ListAlertsResponse:
        limit = _limit(request.limit)
        if request.since_unix_ms < 0:
            raise InvalidInput("since_unix_ms must not be negative")
        if request.include_resolved:
            alerts = self._alerts.history(request.since_unix_ms, limit)
        else:
            alerts = self._alerts.active()[:limit]
        return fleet_pb2.ListAlertsResponse(alerts=[alert_to_proto(a) for a in alerts])

    def ListEvents(
        self, request: fleet_pb2.ListEventsRequest, context: grpc.ServicerContext
    ) -> fleet_pb2.ListEventsResponse:
        limit = _limit(request.limit)
        if request.since_unix_ms < 0:
            raise InvalidInput("since_unix_ms must not be negative")
        kinds = list(request.kinds)
        if len(kinds) > MAX_KINDS or any(not k or len(k) > 64 for k in kinds):
            raise InvalidInput(f"kinds: at most {MAX_KINDS}, each 1-64 characters")
        device = self._registry.get(request.device_id).device_id if request.device_id else ""
        events = self._events.query(request.since_unix_ms, kinds, device, limit)
        return fleet_pb2.ListEventsResponse(events=[event_to_proto(e) for e in events])
