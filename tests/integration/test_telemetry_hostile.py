"""One device cannot corrupt or cost other devices' telemetry: a real controller on loopback
(its supervised broker and MQTT ingest, the telemetry store on SQLite), two enrolled devices
publishing real TelemetryReports over MQTT, one of them hostile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from agent.telemetry import TelemetryAggregator
from controller.app import Controller
from edgefleet.histograms import LATENCY_BOUNDS_MS
from edgefleet.v1 import report_pb2
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller

U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1
HOUR_MS = 3600 * 1000


class Device:
    def __init__(self, ctl: Controller, admin: Admin, data_dir: Path, name: str) -> None:
        identity = enroll(
            data_dir, f"127.0.0.1:{ctl.grpc_port}", admin.register(name), detect(), attempts=1
        )
        self.device_id = identity.device_id
        self.mqtt = AgentMqttClient(
            AgentMqttConfig(
                url=identity.mqtt_url, device_id=identity.device_id,
                username=identity.mqtt_username, password=identity.mqtt_password,
            )
        )  # fmt: skip
        self.mqtt.start()
        self.aggregator = TelemetryAggregator(
            identity.device_id, "tiny", "tiny:1:onnx-fp32", process_stats=lambda: (1 << 20, 5.0)
        )

    def report(self, frames: int) -> report_pb2.TelemetryReport:
        for _ in range(frames):
            self.aggregator.record_frame(1.0, 2.0, 0.9)
        return self.aggregator.report()

    def publish(self, report: report_pb2.TelemetryReport) -> None:
        self.mqtt.publish("telemetry", report.SerializeToString())

    def close(self) -> None:
        self.mqtt.stop()


@contextmanager
def fleet(tmp_path: Path) -> Iterator[tuple[Controller, Device, Device]]:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    devices: list[Device] = []
    try:
        devices += [Device(ctl, admin, tmp_path / n, n) for n in ("honest", "hostile")]
        yield ctl, devices[0], devices[1]
    finally:
        for d in devices:
            d.close()
        admin.close()
        ctl.stop()


def stored_frames(ctl: Controller, device_id: str) -> int:
    totals = ctl.telemetry.device_totals(0, None, [device_id])
    return totals[device_id].frames if device_id in totals else 0


def wait_for_reports(ctl: Controller, n: int) -> None:
    stats = ctl.ingest.stats
    assert wait_until(lambda: stats.telemetry_received + stats.dropped_invalid_report >= n, 20), (
        f"{stats}"
    )
    assert ctl.telemetry.flush(10)


@pytest.mark.timeout(120)
def test_histograms_with_too_many_buckets_are_dropped_and_counted(tmp_path: Path) -> None:
    with fleet(tmp_path) as (ctl, honest, hostile):
        honest.publish(honest.report(5))
        huge = hostile.report(3)
        for histogram in (huge.end_to_end_latency_ms, huge.local_latency_ms):
            n = 10_000  # ~100 KB a histogram, every bucket a counted value
            histogram.bounds[:] = [float(i) for i in range(1, n + 1)]
            histogram.counts[:] = [1] * (n + 1)
            histogram.count = n + 1
        hostile.publish(huge)
        hostile.publish(hostile.report(4))  # the device's next, sane report is kept
        wait_for_reports(ctl, 3)
        assert ctl.ingest.stats.dropped_invalid_report == 1
        assert stored_frames(ctl, honest.device_id) == 5
        assert stored_frames(ctl, hostile.device_id) == 4


@pytest.mark.timeout(120)
def test_out_of_range_values_cost_no_other_device_a_report(tmp_path: Path) -> None:
    with fleet(tmp_path) as (ctl, honest, hostile):
        reports = [honest.report(3) for _ in range(20)]
        bad = []
        for field, value in (
            ("frames", U64_MAX), ("rss_bytes", U64_MAX), ("sequence", U64_MAX),
            ("reports_dropped", U64_MAX), ("cpu_percent", float("nan")),
            ("cpu_percent", -5.0), ("interval_start_unix_ms", -1),
        ):  # fmt: skip
            report = hostile.report(1)
            setattr(report, field, value)
            bad.append(report)
        errors = hostile.report(1)
        errors.errors["inference"] = U64_MAX
        latency = hostile.report(1)
        latency.end_to_end_latency_ms.counts[0] = U64_MAX
        latency.end_to_end_latency_ms.count = U64_MAX
        bad += [errors, latency]
        for i, report in enumerate(reports):  # interleaved: the same write batches
            honest.publish(report)
            if i < len(bad):
                hostile.publish(bad[i])
        wait_for_reports(ctl, len(reports) + len(bad))
        assert ctl.ingest.stats.dropped_invalid_report == len(bad)
        assert stored_frames(ctl, honest.device_id) == 60
        assert ctl.telemetry.stats.write_errors == 0


@pytest.mark.timeout(120)
def test_values_that_would_overflow_a_minute_rollup_leave_pruning_working(tmp_path: Path) -> None:
    with fleet(tmp_path) as (ctl, honest, hostile):
        for _ in range(3):
            honest.publish(honest.report(2))
        for _ in range(2):  # each fits the column, their sum does not
            report = hostile.report(1)
            report.frames = I64_MAX
            report.audited = I64_MAX
            hostile.publish(report)
        wait_for_reports(ctl, 5)
        rolled, _ = ctl.telemetry.prune(now_ms=int(time.time() * 1000) + 2 * HOUR_MS)
        assert rolled >= 3
        assert stored_frames(ctl, honest.device_id) == 6
        hostile_frames = stored_frames(ctl, hostile.device_id)
        assert 0 <= hostile_frames <= I64_MAX


@pytest.mark.timeout(120)
def test_histograms_with_ever_new_bounds_keep_stored_buckets_bounded(tmp_path: Path) -> None:
    with fleet(tmp_path) as (ctl, honest, hostile):
        rng = np.random.default_rng(3)
        n_reports, n_bounds = 30, 100
        for _ in range(n_reports):
            report = hostile.report(n_bounds + 1)
            bounds = np.sort(rng.choice(np.arange(1, 10**6), n_bounds, replace=False)) / 100
            for histogram in (report.end_to_end_latency_ms, report.local_latency_ms):
                histogram.bounds[:] = [float(b) for b in bounds]
                histogram.counts[:] = [1] * (n_bounds + 1)
                histogram.count = n_bounds + 1
            hostile.publish(report)
        honest.publish(honest.report(5))
        wait_for_reports(ctl, n_reports + 1)
        assert ctl.ingest.stats.dropped_invalid_report == 0  # well-formed, only odd bounds
        totals = ctl.telemetry.device_totals(0, None, [hostile.device_id])[hostile.device_id]
        assert totals.frames == n_reports * (n_bounds + 1)
        for buckets in (totals.latency, totals.local_latency):
            assert len(buckets) <= len(LATENCY_BOUNDS_MS) + 1, len(buckets)
            assert sum(buckets.values()) == n_reports * (n_bounds + 1)
        assert stored_frames(ctl, honest.device_id) == 5
