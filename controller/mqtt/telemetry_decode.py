"""TelemetryReport (protobuf, from MQTT) -> validated ReportSample (domain), or InvalidInput.

Every field is range-checked against edgefleet.telemetry_fields (non-negative, finite, inside
the store's columns, histograms of at most MAX_BUCKETS buckets): the ingest counts and logs
a refused report, and nothing out of range reaches the store's shared batch writes.
"""

from __future__ import annotations

import math

from controller.services.telemetry_math import ReportSample, histogram_buckets, snap_to_ladder
from edgefleet import telemetry_fields as tf
from edgefleet.errors import InvalidInput
from edgefleet.v1 import report_pb2


def _histogram(h: report_pb2.Histogram, field: tf.HistogramField) -> dict[float, int]:
    """Checked buckets; a stored histogram with other bounds than the declared ones (an older
    agent's, or a peer's) is snapped onto them, so stored keys stay bounded."""
    buckets = _checked_buckets(h, field.proto)
    if field.stored and tuple(h.bounds) != field.bounds:
        return snap_to_ladder(buckets, field.bounds)
    return buckets


def _checked_buckets(h: report_pb2.Histogram, name: str) -> dict[float, int]:
    if not h.bounds and not h.counts:
        if h.count:
            raise InvalidInput(f"{name}: a count without buckets")
        return {}
    if len(h.bounds) > tf.MAX_BUCKETS:
        raise InvalidInput(f"{name}: {len(h.bounds)} buckets, at most {tf.MAX_BUCKETS}")
    if any(c > tf.MAX_COUNT for c in h.counts) or h.count > tf.MAX_COUNT:
        raise InvalidInput(f"{name}: a bucket count above {tf.MAX_COUNT}")
    if not math.isfinite(h.sum) or h.sum < 0:
        raise InvalidInput(f"{name}: sum must be finite and >= 0")
    try:
        buckets = histogram_buckets(h.bounds, h.counts)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from exc
    if sum(buckets.values()) != h.count:
        raise InvalidInput(f"{name}: bucket counts do not add up to count")
    return buckets


def _text(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidInput(f"{name} longer than {limit} characters")
    return value


def _check_times(r: report_pb2.TelemetryReport, received_ms: int) -> None:
    start, end = r.interval_start_unix_ms, r.interval_end_unix_ms
    if start < 0:
        raise InvalidInput("interval starts before 1970")
    if end < start:
        raise InvalidInput("interval ends before it starts")
    if end - start > tf.MAX_SPAN_MS:
        raise InvalidInput("interval longer than a day")
    if end > received_ms + tf.MAX_CLOCK_AHEAD_MS:
        raise InvalidInput("interval ends more than a day after it was received")


def _counts(r: report_pb2.TelemetryReport) -> dict[str, int]:
    counts = {}
    for counter in tf.COUNTERS:
        value = counter.read(r)
        if value > counter.max:
            raise InvalidInput(f"{counter.proto} = {value} is above {counter.max}")
        counts[counter.name] = value
    if counts["offloaded"] > counts["frames"]:
        raise InvalidInput("more offloads than frames")
    if counts["offload_failures"] > counts["offloaded"] + counts["frames"]:
        raise InvalidInput("more offload failures than frames")
    for kind in ("offload", "audit"):
        if counts[f"{kind}_agreed"] > counts[f"{kind}_pairs"]:
            raise InvalidInput(f"{kind} agreement: more agreed than pairs")
    return counts


def _errors(r: report_pb2.TelemetryReport) -> dict[str, int]:
    if len(r.errors) > tf.MAX_ERROR_KINDS:
        raise InvalidInput(f"{len(r.errors)} error kinds, at most {tf.MAX_ERROR_KINDS}")
    errors: dict[str, int] = {}
    for kind, n in r.errors.items():
        if n > tf.MAX_COUNT:
            raise InvalidInput(f"error count {kind[:64]!r} = {n} is above {tf.MAX_COUNT}")
        key = kind[: tf.MAX_ERROR_KIND_CHARS]
        errors[key] = errors.get(key, 0) + int(n)
    return errors


def sample_from_report(
    report: report_pb2.TelemetryReport, device_id: str, received_ms: int
) -> ReportSample:
    """Check a decoded report for range and consistency; the caller has checked the device id."""
    r = report
    _check_times(r, received_ms)
    if r.sequence > tf.INT64_MAX:
        raise InvalidInput(f"sequence {r.sequence} is above {tf.INT64_MAX}")
    if r.rss_bytes > tf.MAX_RSS_BYTES:
        raise InvalidInput(f"rss_bytes {r.rss_bytes} is above {tf.MAX_RSS_BYTES}")
    if not (math.isfinite(r.cpu_percent) and 0 <= r.cpu_percent <= tf.MAX_CPU_PERCENT):
        raise InvalidInput(f"cpu_percent {r.cpu_percent} outside 0..{tf.MAX_CPU_PERCENT}")
    histograms = {h.name: _histogram(getattr(r, h.proto), h) for h in tf.HISTOGRAMS}
    return ReportSample(
        device_id=device_id,
        start_ms=r.interval_start_unix_ms,
        end_ms=r.interval_end_unix_ms,
        model=_text(r.model, "model", tf.MAX_MODEL_CHARS),
        variant_id=_text(r.variant_id, "variant_id", tf.MAX_VARIANT_CHARS),
        sequence=r.sequence,
        counts=_counts(r),
        rss_bytes=r.rss_bytes,
        cpu_percent=float(r.cpu_percent),
        errors=_errors(r),
        latency=histograms["latency"],
        local_latency=histograms["local_latency"],
        confidence=histograms["confidence"],
        received_ms=received_ms,
    )
