"""What each dashboard page shows, as plain values for its template (no HTTP here).

The overview pages the device table (``PAGE_SIZE`` a page) and reads telemetry only for the
devices on the page, so it costs the same with 10 devices or 10,000.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.http.plots import Band, Line, histogram_chart, line_chart
from controller.http.series import device_series
from controller.monitoring.alerts import AlertRules
from controller.monitoring.drift import Baseline, bucket_counts, drift_score
from controller.services.devices import Device, DeviceRegistry
from controller.services.models import ModelCatalogue
from controller.services.rollout_store import StoredRollout
from controller.services.rollouts import RolloutService
from controller.services.telemetry import CohortMetrics, TelemetryStore, metrics_of
from controller.services.telemetry_math import Totals
from controller.store.db import Database
from edgefleet.histograms import CONFIDENCE_BOUNDS

PAGE_SIZE = 50
DRIFT_ALERT_PSI = AlertRules().psi_max  # the controller's drift rule, drawn on the plot
WINDOWS = ("60s", "10m", "1h", "6h", "24h")


class EventSource(Protocol):
    """controller.monitoring.events.EventLog, as the dashboard reads it."""

    def query(
        self, since_ms: int = 0, kinds: Sequence[str] = (), device: str = "", limit: int = 200
    ) -> Sequence[Any]: ...


class AlertSource(Protocol):
    """controller.monitoring.alerts.AlertLog, as the dashboard reads it."""

    def active(self) -> Sequence[Any]: ...

    def history(self, *args: Any, **kwargs: Any) -> Sequence[Any]: ...


# variant id -> its validation confidence distribution (controller.monitoring.baselines)
BaselineOf = Callable[[str], Baseline | None]


@dataclass
class DashboardSources:
    db: Database
    registry: DeviceRegistry
    telemetry: TelemetryStore
    rollouts: RolloutService
    models: ModelCatalogue
    events: EventSource | None = None
    alerts: AlertSource | None = None
    baseline: BaselineOf | None = None
    clock: Callable[[], float] = field(default=time.time)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    metrics: CohortMetrics
    model: str
    variant_id: str
    last_seen_ms: int
    alerts: tuple[str, ...]  # rules of the device's open alerts


@dataclass(frozen=True)
class Overview:
    rows: list[DeviceRow]
    page: int
    pages: int
    matching: int
    total: int
    online: int
    enrolled: int
    active_rollouts: int
    active_alerts: int
    query: str
    window: str


def as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else dict(vars(item))


def overview(src: DashboardSources, page: int, query: str, window_ms: int, window: str) -> Overview:
    query = query.strip()
    counts = src.registry.presence_counts()
    page = max(1, page)
    shown, matching = src.registry.page(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, -(-matching // PAGE_SIZE))
    if page > pages:  # past the end: the last page
        page = pages
        shown, matching = src.registry.page(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    now = src.now_ms()
    ids = [d.device_id for d in shown]
    per_variant = src.telemetry.device_variant_totals(now - window_ms, None, ids)
    latest = src.telemetry.latest()
    open_alerts = [as_dict(a) for a in src.alerts.active()] if src.alerts is not None else []
    rules: dict[str, list[str]] = {}
    for a in open_alerts:
        rules.setdefault(str(a.get("device_id", "")), []).append(str(a.get("rule", "")))
    rows = []
    for d in shown:
        variants = per_variant.get(d.device_id, {})
        t = Totals.of(variants.values())
        entry = latest.get(d.device_id)
        rows.append(
            DeviceRow(
                d,
                metrics_of(t, 1 if t.reports else 0, src.telemetry.accuracy_of(variants)),
                entry.sample.model if entry else "",
                entry.sample.variant_id if entry else "",
                max(d.last_seen_ms, entry.received_ms if entry else 0),
                tuple(sorted(rules.get(d.device_id, []))),
            )
        )
    return Overview(
        rows=rows,
        page=page,
        pages=pages,
        matching=matching,
        total=counts["total"],
        online=counts["online"],
        enrolled=counts.get("enrolled", 0),
        active_rollouts=sum(1 for r in src.rollouts.store.rollouts(active_only=True)),
        active_alerts=len(open_alerts),
        query=query,
        window=window,
    )


@dataclass(frozen=True)
class DevicePage:
    device: Device
    window: str
    overall: CohortMetrics
    plots: dict[str, Any]
    events: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    variant_id: str


def device_page(src: DashboardSources, device_id: str, window_ms: int, window: str) -> DevicePage:
    device = src.registry.get(device_id)  # NotFound -> 404
    until = src.now_ms()
    since = until - window_ms
    series = device_series(
        src.db, device.device_id, since, until, buckets=60, accuracy=src.telemetry.accuracy_of
    )
    mid = [((p.start_ms + p.end_ms) / 2, p.metrics) for p in series.points]
    x_range = (float(since), float(until))

    def line(label: str, pick: Callable[[CohortMetrics], float | None]) -> Line:
        return Line(label, [(x, v) for x, m in mid if (v := pick(m)) is not None])

    latency = line_chart(
        "Latency (end to end)",
        [line("p50", lambda m: m.p50_latency_ms), line("p95", lambda m: m.p95_latency_ms)],
        x_range,
        unit="ms",
    )
    offload = line_chart(
        "Offload rate", [line("offloaded share", lambda m: m.offload_rate)], x_range,
        y_range=(0.0, 1.0),
    )  # fmt: skip
    band = Band("95% interval", [(x, m.accuracy.low, m.accuracy.high) for x, m in mid if m.frames])
    accuracy = line_chart(
        "Estimated accuracy",
        [line("estimate", lambda m: m.accuracy.value)],
        x_range,
        band=band,
        y_range=(0.0, 1.0),
    )
    latest = src.telemetry.latest().get(device.device_id)
    variant_id = latest.sample.variant_id if latest else ""
    base = src.baseline(variant_id) if src.baseline is not None and variant_id else None
    drift_points: list[tuple[float, float]] = []
    if base is not None:  # each bucket's PSI against the variant's validation distribution
        for p in series.points:
            psi = drift_score(base, p.totals).psi
            if psi is not None and p.totals.confidence:
                drift_points.append(((p.start_ms + p.end_ms) / 2, psi))
    drift = line_chart(
        "Drift score (PSI)", [Line("PSI vs validation", drift_points)], x_range,
        threshold=(DRIFT_ALERT_PSI, f"alert at {DRIFT_ALERT_PSI:g}"),
    )  # fmt: skip
    bounds = base.bounds if base is not None else CONFIDENCE_BOUNDS
    keys = [*bounds, 1.0]
    observed = bucket_counts(series.confidence, bounds)
    baseline: list[tuple[float, float]] = []
    if base is not None:
        baseline = list(zip(keys, _shares(base.counts), strict=True))
    confidence = histogram_chart(
        "Confidence of the edge model (this window vs validation)",
        list(zip(keys, _shares(observed), strict=True)) if sum(observed) else [],
        baseline,
    )
    events: list[dict[str, Any]] = []
    if src.events is not None:
        events = [as_dict(e) for e in src.events.query(since_ms=since, device=device.device_id,
                                                       limit=50)]  # fmt: skip
    alerts: list[dict[str, Any]] = []
    if src.alerts is not None:
        alerts = [a for a in map(as_dict, src.alerts.active()) if _about(a, device.device_id)]
    return DevicePage(
        device,
        window,
        series.overall,
        {
            "latency": latency,
            "offload": offload,
            "accuracy": accuracy,
            "drift": drift,
            "confidence": confidence,
        },
        events,
        alerts,
        variant_id,
    )


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _about(alert: Mapping[str, Any], device_id: str) -> bool:
    return device_id in (alert.get("device_id"), alert.get("device"), alert.get("subject"))


@dataclass(frozen=True)
class RolloutView:
    rollout: StoredRollout
    explanation: str
    cohorts: list[tuple[int, float, dict[str, int]]]  # (stage, fraction, {state: devices})
    events: list[Any]


def rollout_views(src: DashboardSources, limit: int = 50) -> list[RolloutView]:
    rollouts = sorted(src.rollouts.rollouts(), key=lambda r: r.created_ms, reverse=True)[:limit]
    views = []
    for r in rollouts:
        cohorts: list[tuple[int, float, dict[str, int]]] = []
        for i, fraction in enumerate(r.spec.stages):
            states: dict[str, int] = {}
            for d in r.state.devices:
                if d.stage == i:
                    states[d.state] = states.get(d.state, 0) + 1
            cohorts.append((i, fraction, states))
        views.append(
            RolloutView(
                r, src.rollouts.explain(r), cohorts, src.rollouts.store.events(r.rollout_id, 20)
            )
        )
    return views


def model_views(src: DashboardSources) -> list[Any]:
    """Each model with its variants and per-profile selections (VariantsReport)."""
    reports = []
    for info in src.models.list_models():
        reports.append(src.models.variants(info.name, info.version))
    return reports


def alert_views(src: DashboardSources, since_ms: int) -> dict[str, list[dict[str, Any]]]:
    active = [as_dict(a) for a in src.alerts.active()] if src.alerts is not None else []
    history: list[dict[str, Any]] = []
    if src.alerts is not None:
        history = [as_dict(a) for a in src.alerts.history(since_ms=since_ms)]
    events = [as_dict(e) for e in src.events.query(since_ms=since_ms)] if src.events else []
    return {"active": active, "history": history, "events": events}


def database_reachable(sources: DashboardSources) -> None:
    """``/readyz``: one round trip to the database; StoreError when it does not answer."""
    from sqlalchemy import text

    with sources.db.session() as session:
        session.execute(text("SELECT 1"))
