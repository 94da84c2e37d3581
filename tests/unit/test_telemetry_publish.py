"""Telemetry publisher store-and-forward with an in-memory broker stand-in; report decoding;
cloud model specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.telemetry.aggregator import TelemetryAggregator
from agent.telemetry.publisher import TelemetryPublisher
from agent.telemetry.spool import DiskSpool
from controller.errors import ConfigError
from controller.mqtt.telemetry_decode import sample_from_report
from controller.services.offload import BatchingConfig, parse_cloud_model_spec
from edgefleet.errors import InvalidInput
from edgefleet.v1 import report_pb2


class FlakyBroker:
    """Acknowledges publishes only while `up`."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[report_pb2.TelemetryReport] = []

    def publish_confirmed(self, kind: str, payload: bytes, timeout: float) -> bool:
        assert kind == "telemetry"
        if not self.up:
            return False
        report = report_pb2.TelemetryReport()
        report.ParseFromString(payload)
        self.received.append(report)
        return True


def test_reports_wait_on_disk_and_go_out_in_order(tmp_path: Path) -> None:
    broker = FlakyBroker()
    agg = TelemetryAggregator("dev-1", "digits", "v1", process_stats=lambda: (0, 0.0))
    publisher = TelemetryPublisher(agg, DiskSpool(tmp_path / "spool", max_reports=3), broker)
    agg.record_frame(1.0, 2.0, 0.9)
    publisher.publish_now()
    broker.up = False
    for _ in range(5):  # 5 reports while offline; the spool keeps the newest 3
        publisher.publish_now()
    assert len(publisher.spool) == 3 and [r.sequence for r in broker.received] == [1]
    broker.up = True
    assert publisher.drain() == 3
    publisher.publish_now()
    sequences = [r.sequence for r in broker.received]
    assert sequences == [1, 4, 5, 6, 7]  # 2 and 3 dropped by the bound, the rest in order
    assert sum(r.reports_dropped for r in broker.received) == 2  # the loss is reported
    assert broker.received[0].frames == 1


def test_spool_survives_a_restart(tmp_path: Path) -> None:
    broker = FlakyBroker()
    broker.up = False
    agg = TelemetryAggregator("dev-1", process_stats=lambda: (0, 0.0))
    TelemetryPublisher(agg, DiskSpool(tmp_path / "s"), broker).publish_now()
    broker.up = True
    again = TelemetryPublisher(agg, DiskSpool(tmp_path / "s"), broker)
    assert again.drain() == 1 and broker.received[0].sequence == 1


def report(**fields: object) -> report_pb2.TelemetryReport:
    return report_pb2.TelemetryReport(device_id="dev-1", **fields)  # type: ignore[arg-type]


def test_decode_checks_consistency() -> None:
    good = report(
        frames=3,
        offloaded=1,
        interval_start_unix_ms=1000,
        interval_end_unix_ms=2000,
        end_to_end_latency_ms=report_pb2.Histogram(bounds=[1, 2], counts=[1, 2, 0], count=3),
    )
    sample = sample_from_report(good, "dev-1", 5)
    assert sample.count("frames") == 3  # bounds off the ladder are snapped onto it:
    assert {b: n for b, n in sample.latency.items() if n} == {1.0: 1, 2.0: 2}
    bad = [
        report(interval_start_unix_ms=5, interval_end_unix_ms=1),
        report(frames=1, offloaded=2),
        report(offload_agreement=report_pb2.Agreement(pairs=1, agreed=2)),
        report(local_latency_ms=report_pb2.Histogram(bounds=[2, 1], counts=[0, 0, 0])),
        report(local_latency_ms=report_pb2.Histogram(bounds=[1], counts=[1, 1], count=5)),
    ]
    for r in bad:
        with pytest.raises(InvalidInput):
            sample_from_report(r, "dev-1", 5)


def test_cloud_model_specs() -> None:
    spec = parse_cloud_model_spec("digits=/m/cloud.onnx")
    assert (spec.edge_model, str(spec.path), spec.preprocess_file) == (
        "digits",
        "/m/cloud.onnx",
        None,
    )
    spec = parse_cloud_model_spec("cam=/m/c.onnx:/m/pre.json?batch=32&delay_ms=5", BatchingConfig())
    assert str(spec.preprocess_file) == "/m/pre.json"
    assert spec.batching == BatchingConfig(max_batch_size=32, max_queue_delay_ms=5.0)
    for bad in ("nomodel", "=x.onnx", "a=b.onnx?colour=red", "a=b.onnx?batch=many"):
        with pytest.raises(ConfigError):
            parse_cloud_model_spec(bad)
