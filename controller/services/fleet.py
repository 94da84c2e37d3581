"""The fleet's inference view: registry devices joined with their telemetry over a window.

Read a page at a time: the devices by name after a keyset token (one indexed query), their
telemetry for that page only, so a request costs what it returns, not the fleet size."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from controller.services.devices import Device, DeviceRegistry
from controller.services.offload import OffloadPairs
from controller.services.telemetry import CohortMetrics, TelemetryStore, metrics_of
from controller.services.telemetry_math import Totals

DEFAULT_WINDOW_S = 60  # reacts to a shift within about a minute
SCAN_PAGE = 500  # devices read from the registry (and their telemetry) per query


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


@dataclass(frozen=True)
class FleetPage:
    views: list[DeviceInferenceView]
    next_after: str  # name of the last device when more may follow, else ""


def fleet_status(
    registry: DeviceRegistry,
    store: TelemetryStore,
    pairs: OffloadPairs | None = None,
    selector: Mapping[str, str] | None = None,
    window_s: int = DEFAULT_WINDOW_S,
    now_ms: int | None = None,
) -> list[DeviceInferenceView]:
    """Every matching device, read SCAN_PAGE at a time."""
    views: list[DeviceInferenceView] = []
    after = ""
    while True:
        page = fleet_page(registry, store, pairs, selector, window_s, now_ms, after, 0)
        views.extend(page.views)
        if not page.next_after:
            return views
        after = page.next_after


def fleet_page(
    registry: DeviceRegistry,
    store: TelemetryStore,
    pairs: OffloadPairs | None = None,
    selector: Mapping[str, str] | None = None,
    window_s: int = DEFAULT_WINDOW_S,
    now_ms: int | None = None,
    after: str = "",
    limit: int = 0,
) -> FleetPage:
    """Up to ``limit`` matching devices named after ``after`` (0: one scan page's matches)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    wanted = limit or SCAN_PAGE
    selector = dict(selector or {})
    if not after:  # the first page includes what just arrived
        store.flush(timeout=2.0)
    devices: list[Device] = []
    cursor, more = after, True
    while more and len(devices) < wanted:
        scanned = registry.after(cursor, SCAN_PAGE)
        more = len(scanned) == SCAN_PAGE
        for i, d in enumerate(scanned):
            cursor = d.name
            if d.matches(selector):
                devices.append(d)
                if len(devices) == wanted:
                    more = more or i < len(scanned) - 1
                    break
    return FleetPage(_views(store, pairs, devices, window_s, now_ms), cursor if more else "")


def _views(
    store: TelemetryStore,
    pairs: OffloadPairs | None,
    devices: list[Device],
    window_s: int,
    now_ms: int,
) -> list[DeviceInferenceView]:
    if not devices:
        return []
    ids = [d.device_id for d in devices]  # one page: a bounded IN-list
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
