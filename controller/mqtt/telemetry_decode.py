"""TelemetryReport (protobuf, from MQTT) -> validated ReportSample (domain), or InvalidInput."""

from __future__ import annotations

import math

from controller.services.telemetry_math import ReportSample, histogram_buckets
from edgefleet.errors import InvalidInput
from edgefleet.v1 import report_pb2

MAX_REPORT_SPAN_MS = 24 * 3600 * 1000
MAX_ERROR_KINDS = 64


def _buckets(h: report_pb2.Histogram, name: str) -> dict[float, int]:
    if not h.bounds and not h.counts:
        return {}
    try:
        buckets = histogram_buckets(h.bounds, h.counts)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from exc
    if sum(buckets.values()) != h.count:
        raise InvalidInput(f"{name}: bucket counts do not add up to count")
    return buckets


def sample_from_report(
    report: report_pb2.TelemetryReport, device_id: str, received_ms: int
) -> ReportSample:
    """Check a decoded report for consistency; the caller has checked the device id."""
    r = report
    if r.interval_end_unix_ms < r.interval_start_unix_ms:
        raise InvalidInput("interval ends before it starts")
    if r.interval_end_unix_ms - r.interval_start_unix_ms > MAX_REPORT_SPAN_MS:
        raise InvalidInput("interval longer than a day")
    if r.offloaded > r.frames or r.offload_failures > r.offloaded + r.frames:
        raise InvalidInput("more offloads than frames")
    for name, a in (("offload", r.offload_agreement), ("audit", r.audit_agreement)):
        if a.agreed > a.pairs:
            raise InvalidInput(f"{name} agreement: more agreed than pairs")
    if len(r.errors) > MAX_ERROR_KINDS:
        raise InvalidInput("too many error kinds")
    return ReportSample(
        device_id=device_id,
        start_ms=r.interval_start_unix_ms,
        end_ms=r.interval_end_unix_ms,
        model=r.model[:128],
        variant_id=r.variant_id[:256],
        sequence=r.sequence,
        frames=r.frames,
        offloaded=r.offloaded,
        offload_failures=r.offload_failures,
        audited=r.audited,
        skipped=r.skipped_frames,
        bad_frames=r.dropped_bad_frames,
        offload_pairs=r.offload_agreement.pairs,
        offload_agreed=r.offload_agreement.agreed,
        audit_pairs=r.audit_agreement.pairs,
        audit_agreed=r.audit_agreement.agreed,
        reports_dropped=r.reports_dropped,
        rss_bytes=r.rss_bytes,
        cpu_percent=float(r.cpu_percent) if math.isfinite(r.cpu_percent) else 0.0,
        errors={k[:64]: int(v) for k, v in r.errors.items()},
        latency=_buckets(r.end_to_end_latency_ms, "end_to_end_latency_ms"),
        local_latency=_buckets(r.local_latency_ms, "local_latency_ms"),
        received_ms=received_ms,
    )
