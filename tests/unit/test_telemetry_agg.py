from __future__ import annotations

import threading

import pytest

from agent.telemetry import LATENCY_BOUNDS_MS, Histogram, TelemetryAggregator
from edgefleet.v1 import report_pb2


def test_histogram_buckets() -> None:
    h = Histogram([1.0, 2.0])
    for v in (0.5, 1.0, 1.5, 9.0):
        h.observe(v)
    assert h.counts == [2, 1, 1] and h.count == 4 and h.sum == pytest.approx(12.0)
    with pytest.raises(ValueError):
        Histogram([2.0, 1.0])


def test_report_counts_histograms_and_resets() -> None:
    now = [1000.0]
    agg = TelemetryAggregator(
        "dev-1", "digits", "digits:1:onnx", clock=lambda: now[0], process_stats=lambda: (123, 4.5)
    )
    agg.record_frame(2.0, 2.5, 0.9)
    agg.record_frame(3.0, 40.0, 0.3, offloaded=True, offload_rtt_ms=35.0)
    agg.record_frame(3.0, 260.0, 0.2, offloaded=True, offload_failed=True)
    agg.record_error("offload_deadline")
    agg.record_pair(4, 4, audit=False)
    agg.record_pair(4, 5, audit=True)
    agg.record_skipped(2)
    agg.record_bad_frame()
    now[0] = 1010.0
    report = agg.report(reports_dropped=3)
    assert report.device_id == "dev-1" and report.variant_id == "digits:1:onnx"
    assert (report.interval_start_unix_ms, report.interval_end_unix_ms) == (1_000_000, 1_010_000)
    assert (report.frames, report.offloaded, report.offload_failures) == (3, 2, 1)
    assert (report.skipped_frames, report.dropped_bad_frames) == (2, 1)
    assert report.local_latency_ms.count == 3 and report.offload_rtt_ms.count == 1
    assert list(report.local_latency_ms.bounds) == list(LATENCY_BOUNDS_MS)
    assert sum(report.end_to_end_latency_ms.counts) == 3
    assert report.confidence.sum == pytest.approx(1.4)
    assert (report.offload_agreement.pairs, report.offload_agreement.agreed) == (1, 1)
    assert (report.audit_agreement.pairs, report.audit_agreement.agreed) == (1, 0)
    assert dict(report.errors) == {"offload_deadline": 1, "bad_frame": 1}
    assert (report.rss_bytes, report.cpu_percent, report.reports_dropped) == (123, 4.5, 3)
    assert report.sequence == 1
    # round-trips through bytes (what the spool and MQTT carry)
    parsed = report_pb2.TelemetryReport.FromString(report.SerializeToString())
    assert parsed == report
    following = agg.report()
    assert following.frames == 0 and following.sequence == 2
    assert following.interval_start_unix_ms == report.interval_end_unix_ms


def test_real_process_stats_and_thread_safety() -> None:
    agg = TelemetryAggregator("dev")

    def work() -> None:
        for _ in range(500):
            agg.record_frame(1.0, 1.0, 0.5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = agg.report()
    assert report.frames == 2000 and report.local_latency_ms.count == 2000
    assert report.rss_bytes > 10_000_000
