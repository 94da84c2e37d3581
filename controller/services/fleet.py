"""The fleet's inference view: registry devices joined with their telemetry over a window."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from controller.services.devices import DeviceRegistry
from controller.services.offload import OffloadPairs
from controller.services.telemetry import CohortMetrics, TelemetryStore, metrics_of
from controller.services.telemetry_math import Totals

DEFAULT_WINDOW_S = 60  # reacts to a shift within about a minute


@dataclass(frozen=True)
class DeviceInferenceView:
    device_id: str
    name: str
    online: bool
    last_seen_ms: int
    last_report_ms: int
    model: str
    variant_id: str
    metrics: CohortMetrics
    cloud_pairs: int


def fleet_status(
    registry: DeviceRegistry,
    store: TelemetryStore,
    pairs: OffloadPairs | None = None,
    selector: Mapping[str, str] | None = None,
    window_s: int = DEFAULT_WINDOW_S,
    now_ms: int | None = None,
) -> list[DeviceInferenceView]:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    devices = registry.list_devices(dict(selector or {}))
    store.flush(timeout=2.0)  # include what just arrived
    ids = [d.device_id for d in devices]
    per_variant = store.device_variant_totals(now_ms - window_s * 1000, None, ids)
    latest = store.latest()
    cloud = pairs.counts() if pairs is not None else {}
    views = []
    for d in devices:
        entry = latest.get(d.device_id)
        variants = per_variant.get(d.device_id, {})
        t = Totals.of(variants.values())
        c = cloud.get(d.device_id)
        views.append(
            DeviceInferenceView(
                device_id=d.device_id,
                name=d.name,
                online=d.online,
                last_seen_ms=max(d.last_seen_ms, entry.received_ms if entry else 0),
                last_report_ms=entry.received_ms if entry else 0,
                model=entry.sample.model if entry else "",
                variant_id=entry.sample.variant_id if entry else "",
                metrics=metrics_of(t, 1 if t.reports else 0, store.accuracy_of(variants)),
                cloud_pairs=(c.offload_pairs + c.audit_pairs) if c else 0,
            )
        )
    return views
