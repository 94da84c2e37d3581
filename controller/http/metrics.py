"""Prometheus ``/metrics``: one custom Collector that reads the controller's parts at scrape time.

Nothing is copied into prometheus_client objects as it happens: each scrape asks the registry,
the telemetry store, the rollout service, the MQTT ingest and the cloud models for their current
values (``FleetCollector.collect``). Per-device gauges cover the last ``metrics_window_s`` of
telemetry (``DeviceWindows``: in memory, fed by the ingest); the latency histograms (per model
and variant) are cumulative since the controller started (``LatencyHistograms``, also fed by
the ingest), as Prometheus histograms must be.

Every family is named ``edgefleet_*``; docs/labels in deploy/README.md.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from controller.http.windows import DeviceWindows
from controller.monitoring.drift import Baseline, drift_score
from controller.mqtt.ingest import IngestStats
from controller.services.devices import DeviceRegistry
from controller.services.offload import OffloadPairs
from controller.services.rollout_store import StoredRollout
from controller.services.telemetry import StoreStats, TelemetryStore, metrics_of
from controller.services.telemetry_math import INF, ReportSample, Totals
from controller.serving.served import ServedModel

Metric = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
# Prometheus bucket bounds (ms) of the latency histograms: a subset of the agents' ladder.
LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)
MAX_HISTOGRAM_SERIES = 1000  # (model, variant) pairs kept; beyond it reports are counted only


class LatencyHistograms:
    """End-to-end frame latency per (model, variant), summed over every report since start.

    ``add`` is an ingest listener (paho's thread); ``snapshot`` is read by scrapes."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_MS) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self._counts: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.not_kept = 0  # reports of (model, variant) pairs beyond MAX_HISTOGRAM_SERIES

    def add(self, sample: ReportSample) -> None:
        key = (sample.model, sample.variant_id)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                if len(self._counts) >= MAX_HISTOGRAM_SERIES:
                    self.not_kept += 1
                    return
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
                self._sums[key] = 0.0
            for upper, n in sample.latency.items():
                if n <= 0:
                    continue
                counts[bisect.bisect_left(self.buckets, upper)] += n
                # a bucket's upper bound stands for its frames (the sum is an upper estimate)
                self._sums[key] += n * (upper if upper != INF else self.buckets[-1])

    def snapshot(self) -> dict[tuple[str, str], tuple[list[int], float]]:
        with self._lock:
            return {k: (list(v), self._sums[k]) for k, v in self._counts.items()}


ExtraFamilies = Callable[[], Iterable[Metric]]


@dataclass(frozen=True)
class MetricsSources:
    """What the collector reads, each at scrape time."""

    registry: DeviceRegistry
    telemetry: TelemetryStore
    rollouts: Callable[[], list[StoredRollout]]
    ingest_stats: Callable[[], IngestStats]
    served_models: Callable[[], Mapping[str, ServedModel]]
    offload_pairs: OffloadPairs
    latency: LatencyHistograms
    windows: DeviceWindows  # the last metrics_window_s of reports per device
    baseline: Callable[[str], Baseline | None] | None = None  # variant -> validation baseline
    # families other parts add (drift scores, alert states), appended to every scrape
    extra: list[ExtraFamilies] = field(default_factory=list)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class FleetCollector(Collector):
    def __init__(self, sources: MetricsSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._devices()
        yield from self._latency_histograms()
        yield from self._rollouts()
        yield from self._ingest()
        yield from self._serving()
        for extra in self._sources.extra:
            yield from extra()

    # -- devices ----------------------------------------------------------------------------
    def _devices(self) -> Iterator[Metric]:
        src = self._sources
        per_device = src.windows.totals()
        latest = src.telemetry.latest()
        # Per-device series carry the device id only; its name, model and variant are the labels
        # of edgefleet_device_info (join with `* on (device) group_left(name) ...`): 2.5x less
        # text per scrape than repeating them on every series.
        labels = ["device"]
        info = _gauge(
            "edgefleet_device_info", "1 per device: its name, model and variant", [
                "device", "name", "model", "variant", "profile"],
        )  # fmt: skip
        up = _gauge("edgefleet_device_online", "1 while the device is connected", labels)
        fps = _gauge("edgefleet_device_fps", "Frames per second over the window", labels)
        latency = _gauge(
            "edgefleet_device_latency_ms",
            "End-to-end frame latency quantile over the window (ms)",
            [*labels, "quantile"],
        )
        offload = _gauge(
            "edgefleet_device_offload_rate", "Offloaded frames per frame over the window", labels
        )
        acc = _gauge(
            "edgefleet_device_accuracy_estimate", "Estimated accuracy over the window", labels
        )
        acc_low = _gauge("edgefleet_device_accuracy_low", "Lower bound of its 95% interval", labels)
        acc_high = _gauge(
            "edgefleet_device_accuracy_high", "Upper bound of its 95% interval", labels
        )
        agree = _gauge(
            "edgefleet_device_agreement", "Edge/cloud agreement over labelled pairs", labels
        )
        frames = _gauge("edgefleet_device_frames", "Frames reported over the window", labels)
        seen = _gauge(
            "edgefleet_device_last_seen_timestamp_seconds", "Last presence or report", labels
        )
        psi = _gauge(
            "edgefleet_device_drift_psi",
            "PSI of the window's confidence distribution against the variant's validation one",
            labels,
        )
        drop = _gauge(
            "edgefleet_device_agreement_drop",
            "Expected (validation) minus observed edge/cloud agreement over the window",
            labels,
        )
        counts = {"online": 0, "offline": 0}
        for d in src.registry.presence():
            entry = latest.get(d.device_id)
            variant = entry.sample.variant_id if entry else ""
            model = entry.sample.model if entry else ""
            info.add_metric([d.device_id, d.name, model, variant, d.profile], 1.0)
            values = [d.device_id]
            counts["online" if d.online else "offline"] += 1
            up.add_metric(values, 1.0 if d.online else 0.0)
            seen.add_metric(values, max(d.last_seen_ms, entry.received_ms if entry else 0) / 1e3)
            variants = per_device.get(d.device_id)
            if not variants:
                continue
            t = Totals.of(variants.values())
            m = metrics_of(t, 1, src.telemetry.accuracy_of(variants))
            frames.add_metric(values, float(m.frames))
            if m.frames_per_s is not None:
                fps.add_metric(values, m.frames_per_s)
            for q, value in (("0.5", m.p50_latency_ms), ("0.95", m.p95_latency_ms)):
                if value is not None:
                    latency.add_metric([*values, q], value)
            if m.offload_rate is not None:
                offload.add_metric(values, m.offload_rate)
            if m.accuracy.value is not None:
                acc.add_metric(values, m.accuracy.value)
            if m.frames:
                acc_low.add_metric(values, m.accuracy.low)
                acc_high.add_metric(values, m.accuracy.high)
            if m.agreement is not None:
                agree.add_metric(values, m.agreement)
            if src.baseline is not None and variant:
                score = drift_score(src.baseline(variant), t)
                if score.psi is not None:
                    psi.add_metric(values, score.psi)
                if score.agreement_drop is not None:
                    drop.add_metric(values, score.agreement_drop)
        devices = _gauge("edgefleet_devices", "Registered devices", ["presence"])
        for presence, n in counts.items():
            devices.add_metric([presence], float(n))
        yield from (devices, info, up, seen, frames, fps, latency, offload, acc, acc_low, acc_high)
        yield from (agree, psi, drop)

    def _latency_histograms(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(
            "edgefleet_frame_latency_ms",
            "End-to-end frame latency (ms) of every reported frame since the controller started",
            labels=["model", "variant"],
        )
        bounds = self._sources.latency.buckets
        for (model, variant), (counts, total) in sorted(self._sources.latency.snapshot().items()):
            cumulative, buckets = 0, []
            for bound, n in zip([*bounds, INF], counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == INF else f"{bound:g}", float(cumulative)))
            hist.add_metric([model, variant], buckets, total)
        yield hist

    # -- rollouts ---------------------------------------------------------------------------
    def _rollouts(self) -> Iterator[Metric]:
        labels = ["rollout", "model", "version"]
        phase = _gauge("edgefleet_rollout_phase", "1 for the rollout's current phase", [
            *labels, "phase"])  # fmt: skip
        stage = _gauge("edgefleet_rollout_stage", "Index of the current stage (0-based)", labels)
        stage_fraction = _gauge(
            "edgefleet_rollout_stage_fraction", "Targeted fraction of the current stage", labels
        )
        devices = _gauge("edgefleet_rollout_devices", "Devices by rollout state", [
            *labels, "state"])  # fmt: skip
        gate_value = _gauge("edgefleet_rollout_gate_value", "Last evaluated gate metric", [
            *labels, "gate", "metric"])  # fmt: skip
        gate_threshold = _gauge("edgefleet_rollout_gate_threshold", "The gate's threshold", [
            *labels, "gate", "metric"])  # fmt: skip
        gate_status = _gauge("edgefleet_rollout_gate_status", "1 for the gate's last status", [
            *labels, "gate", "status"])  # fmt: skip
        for r in self._sources.rollouts():
            values = [r.rollout_id, r.spec.model, str(r.spec.version)]
            st = r.state
            phase.add_metric([*values, st.phase], 1.0)
            stage.add_metric(values, float(st.stage_index))
            stages = r.spec.stages
            stage_fraction.add_metric(values, stages[min(st.stage_index, len(stages) - 1)])
            by_state: dict[str, int] = {}
            for d in st.devices:
                by_state[d.state] = by_state.get(d.state, 0) + 1
            for state, n in sorted(by_state.items()):
                devices.add_metric([*values, state], float(n))
            for g in st.last_gates:
                if g.value is not None:
                    gate_value.add_metric([*values, g.gate, g.metric], g.value)
                if g.threshold is not None:
                    gate_threshold.add_metric([*values, g.gate, g.metric], g.threshold)
                gate_status.add_metric([*values, g.gate, g.status], 1.0)
        yield from (phase, stage, stage_fraction, devices, gate_value, gate_threshold)
        yield gate_status

    # -- ingest and serving -----------------------------------------------------------------
    def _ingest(self) -> Iterator[Metric]:
        stats = self._sources.ingest_stats()
        received = CounterMetricFamily(
            "edgefleet_ingest_messages", "MQTT messages the ingest accepted", labels=["kind"]
        )
        received.add_metric(["status"], stats.status_received)
        received.add_metric(["heartbeat"], stats.heartbeats_received)
        received.add_metric(["telemetry"], stats.telemetry_received)
        dropped = CounterMetricFamily(
            "edgefleet_ingest_dropped", "MQTT messages dropped, by reason", labels=["reason"]
        )
        for f in fields(IngestStats):
            if f.name.startswith("dropped_"):
                dropped.add_metric([f.name.removeprefix("dropped_")], getattr(stats, f.name))
        dropped.add_metric(["sink_error"], stats.sink_errors)
        disconnects = CounterMetricFamily(
            "edgefleet_ingest_disconnects", "Connections to the broker lost"
        )
        disconnects.add_metric([], stats.disconnects)
        store = CounterMetricFamily(
            "edgefleet_telemetry_reports",
            "Telemetry reports at the store, by outcome",
            labels=["outcome"],
        )
        store_stats = self._sources.telemetry.stats
        for f in fields(StoreStats):
            store.add_metric([f.name], getattr(store_stats, f.name))
        yield from (received, dropped, disconnects, store)

    def _serving(self) -> Iterator[Metric]:
        depth = _gauge("edgefleet_offload_queue_depth", "Frames waiting for the cloud model", [
            "model"])  # fmt: skip
        max_batch = _gauge("edgefleet_offload_max_batch_size", "The serving plan's batch size", [
            "model"])  # fmt: skip
        batches = CounterMetricFamily(
            "edgefleet_offload_batches", "Batches the cloud model ran", labels=["model"]
        )
        batched = CounterMetricFamily(
            "edgefleet_offload_batched_frames", "Frames in those batches", labels=["model"]
        )
        for name, served in sorted(self._sources.served_models().items()):
            s = served.queue_stats()
            depth.add_metric([name], float(s.queue_depth))
            max_batch.add_metric([name], float(s.max_batch_size))
            batches.add_metric([name], s.batches)
            batched.add_metric([name], s.frames)
        pairs = CounterMetricFamily(
            "edgefleet_offload_pairs",
            "Labelled pairs the controller answered, per device",
            labels=["device", "kind"],
        )
        agreed = CounterMetricFamily(
            "edgefleet_offload_pairs_agreed",
            "Of those, pairs where edge and cloud agreed",
            labels=["device", "kind"],
        )
        for device, c in sorted(self._sources.offload_pairs.counts().items()):
            pairs.add_metric([device, "offload"], c.offload_pairs)
            pairs.add_metric([device, "audit"], c.audit_pairs)
            agreed.add_metric([device, "offload"], c.offload_agreed)
            agreed.add_metric([device, "audit"], c.audit_agreed)
        yield from (depth, max_batch, batches, batched, pairs, agreed)


def metrics_registry(sources: MetricsSources) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): one per controller."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(sources))
    return registry
