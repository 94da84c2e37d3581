"""A simulated fleet for the HTTP tests and bench_http: devices registered through the real
registry and telemetry sent through the controller's real telemetry path (DeviceMessages: the
store and the /metrics histograms), as the MQTT ingest would after decoding a report."""

from __future__ import annotations

import random
from dataclasses import dataclass

from controller.app import Controller
from controller.services.telemetry_math import ReportSample
from edgefleet.histograms import CONFIDENCE_BOUNDS

REPORT_MS = 10_000


@dataclass(frozen=True)
class SeededFleet:
    device_ids: list[str]
    names: list[str]
    reports: int


def report(
    device_id: str,
    end_ms: int,
    sequence: int,
    *,
    frames: int = 200,
    offloaded: int = 20,
    latency_ms: float = 8.0,
    audit_pairs: int = 10,
    audit_agreed: int = 9,
    model: str = "fashion-edge",
    variant_id: str = "fashion-edge:1/onnx-int8",
    rng: random.Random | None = None,
) -> ReportSample:
    rng = rng or random.Random(sequence)
    conf_lo = CONFIDENCE_BOUNDS[rng.randrange(10, len(CONFIDENCE_BOUNDS) - 1)]
    return ReportSample(
        device_id=device_id,
        start_ms=end_ms - REPORT_MS,
        end_ms=end_ms,
        model=model,
        variant_id=variant_id,
        sequence=sequence,
        counts={
            "frames": frames,
            "offloaded": offloaded,
            "offload_failures": 0,
            "audited": audit_pairs,
            "offload_pairs": offloaded,
            "offload_agreed": offloaded // 2,
            "audit_pairs": audit_pairs,
            "audit_agreed": audit_agreed,
        },
        # bucket keys as histogram_buckets makes them: each count's lower bound as a 0 key
        latency={latency_ms * 0.8: 0, latency_ms: frames - 10, latency_ms * 3: 10},
        local_latency={1.0: 0, 2.0: frames},
        confidence={conf_lo: 0, 1.0: frames},
        received_ms=end_ms,
    )


def seed_fleet(
    controller: Controller, devices: int, reports_each: int, now_ms: int, seed: int = 0
) -> SeededFleet:
    """``devices`` registered devices, each with ``reports_each`` reports ending at now_ms."""
    rng = random.Random(seed)
    names = [f"cam-{i:04d}" for i in range(devices)]
    ids = []
    for name in names:
        reg = controller.registry.register(name, "generic-cpu", {"site": f"s{len(ids) % 7}"})
        ids.append(reg.device.device_id)
    sent = 0
    for device_id in ids:
        latency = rng.uniform(4.0, 30.0)
        for k in range(reports_each):
            end = now_ms - (reports_each - 1 - k) * REPORT_MS
            sample = report(device_id, end, k, latency_ms=latency, rng=rng)
            controller.device_messages.device_telemetry(device_id, sample)
            sent += 1
            if sent % 5000 == 0:  # stay within the store's queue bound (10,000)
                _flush(controller)
    _flush(controller)
    return SeededFleet(ids, names, reports_each)


def _flush(controller: Controller) -> None:
    if not controller.telemetry.flush(timeout=60.0):
        raise RuntimeError("the telemetry store did not write the seeded reports in 60 s")
