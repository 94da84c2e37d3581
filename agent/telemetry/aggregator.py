"""Per-interval telemetry: counts, fixed-bucket histograms, agreement, process RSS/CPU.

Latency histograms use ``edgefleet.histograms.LATENCY_BOUNDS_MS`` (log-spaced from 10 µs), so
a model that answers in a few tens of microseconds is resolved, not lumped into one bucket."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgefleet.histograms import CONFIDENCE_BOUNDS, LATENCY_BOUNDS_MS
from edgefleet.telemetry_fields import COUNTERS, HISTOGRAMS
from edgefleet.v1 import report_pb2

__all__ = ["CONFIDENCE_BOUNDS", "LATENCY_BOUNDS_MS", "Histogram", "TelemetryAggregator"]

BAD_FRAME = "bad_frame"  # errors of this kind (and "bad_frame:<reason>") are bad inputs


class Histogram:
    """counts[i] counts values <= bounds[i]; the extra last bucket counts the rest."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def to_proto(self) -> report_pb2.Histogram:
        return report_pb2.Histogram(
            bounds=self.bounds, counts=self.counts, sum=self.sum, count=self.count
        )


@dataclass
class _Interval:
    """The counts (edgefleet.telemetry_fields.COUNTERS) and histograms (HISTOGRAMS) of one
    interval, by their declared names."""

    start_ms: int
    counts: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {h.name: Histogram(h.bounds) for h in HISTOGRAMS}
    )
    errors: Counter[str] = field(default_factory=Counter)


def _process_stats() -> Callable[[], tuple[int, float]]:
    """(RSS bytes, CPU percent since the previous call) of this process, via psutil."""
    try:
        import psutil
    except ImportError:
        return lambda: (0, 0.0)
    process = psutil.Process()
    process.cpu_percent(None)  # starts the measurement interval

    def stats() -> tuple[int, float]:
        return int(process.memory_info().rss), float(process.cpu_percent(None))

    return stats


class TelemetryAggregator:
    """Thread-safe counters for the current interval; `report()` closes it and starts the next."""

    def __init__(
        self,
        device_id: str,
        model: str = "",
        variant_id: str = "",
        clock: Callable[[], float] = time.time,
        process_stats: Callable[[], tuple[int, float]] | None = None,
    ) -> None:
        self.device_id = device_id
        self._model = model
        self._variant_id = variant_id
        self._clock = clock
        self._stats = process_stats or _process_stats()
        self._lock = threading.Lock()
        self._sequence = 0
        self._interval = _Interval(self._now_ms())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def set_model(self, model: str, variant_id: str) -> None:
        with self._lock:
            self._model, self._variant_id = model, variant_id

    def record_frame(
        self,
        local_ms: float,
        end_to_end_ms: float,
        confidence: float,
        offloaded: bool = False,
        offload_failed: bool = False,
        offload_rtt_ms: float | None = None,
        audited: bool = False,
    ) -> None:
        with self._lock:
            counts, histograms = self._interval.counts, self._interval.histograms
            counts["frames"] += 1
            counts["offloaded"] += offloaded
            counts["offload_failures"] += offload_failed
            counts["audited"] += audited
            histograms["local_latency"].observe(local_ms)
            histograms["latency"].observe(end_to_end_ms)
            histograms["confidence"].observe(confidence)
            if offload_rtt_ms is not None:
                histograms["offload_rtt"].observe(offload_rtt_ms)

    def record_offload_failure(self, kind: str) -> None:
        """A failure found after the frame was recorded (asynchronous offloads)."""
        with self._lock:
            self._interval.counts["offload_failures"] += 1
            self._interval.errors[f"offload_{kind}"] += 1

    def record_audit_skipped_busy(self) -> None:
        """An audit not sent because every offload slot was busy (not a failed offload)."""
        with self._lock:
            self._interval.counts["audit_skipped_busy"] += 1

    def record_offload_rtt(self, rtt_ms: float) -> None:
        with self._lock:
            self._interval.histograms["offload_rtt"].observe(rtt_ms)

    def record_pair(self, edge_label: int, cloud_label: int, audit: bool) -> None:
        kind = "audit" if audit else "offload"
        with self._lock:
            self._interval.counts[f"{kind}_pairs"] += 1
            self._interval.counts[f"{kind}_agreed"] += int(edge_label == cloud_label)

    def record_skipped(self, n: int = 1) -> None:
        with self._lock:
            self._interval.counts["skipped"] += n

    def record_bad_frame(self, reason: str = "") -> None:
        with self._lock:
            self._interval.counts["bad_frames"] += 1
            self._interval.errors[f"{BAD_FRAME}:{reason}" if reason else BAD_FRAME] += 1

    def record_error(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._interval.errors[kind] += n

    def report(self, reports_dropped: int = 0) -> report_pb2.TelemetryReport:
        """Close the current interval and return its report (sequence numbers count up)."""
        rss, cpu = self._stats()
        with self._lock:
            i, now = self._interval, self._now_ms()
            self._interval = _Interval(now)
            self._sequence += 1
            report = report_pb2.TelemetryReport(
                device_id=self.device_id,
                interval_start_unix_ms=i.start_ms,
                interval_end_unix_ms=now,
                model=self._model,
                variant_id=self._variant_id,
                rss_bytes=rss,
                cpu_percent=cpu,
                errors=dict(i.errors),
                sequence=self._sequence,
            )
        counts = {**i.counts, "reports_dropped": reports_dropped}
        for counter in COUNTERS:
            counter.write(report, counts.get(counter.name, 0))
        for h in HISTOGRAMS:
            getattr(report, h.proto).CopyFrom(i.histograms[h.name].to_proto())
        return report
