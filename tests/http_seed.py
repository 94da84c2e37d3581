"""A simulated fleet for the HTTP tests and bench_http: devices registered through the real
registry and telemetry sent through the controller's real telemetry path (DeviceMessages: the
store and the /metrics histograms), as the MQTT ingest would after decoding a report."""

from __future__ import annotations

import random
from dataclasses import dataclass

from controller.app import Controller
from controller.monitoring.drift import Baseline
from controller.services.telemetry_math import INF, ReportSample
from controller.store.models_models import ModelRow, VariantRow
from edgefleet.histograms import CONFIDENCE_BOUNDS

REPORT_MS = 10_000
VARIANT_ID = "fashion-edge:1/onnx-int8"
# The build record's validation confidence quantiles (0%, 10%, ... 100%): the drift baseline.
QUANTILES = [0.3, 0.55, 0.7, 0.8, 0.86, 0.9, 0.93, 0.95, 0.97, 0.99, 1.0]
_COUNTS = Baseline.from_quantiles(QUANTILES, 0.9).counts
_SHARES = [c / sum(_COUNTS) for c in _COUNTS]


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
    variant_id: str = VARIANT_ID,
    rng: random.Random | None = None,
) -> ReportSample:
    # confidence as on validation (the baseline's shares), so a seeded fleet is not drifting
    bounds = [*CONFIDENCE_BOUNDS, INF]
    confidence = {b: round(frames * share) for b, share in zip(bounds, _SHARES, strict=True)}
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
            "offload_agreed": offloaded * 3 // 4,
            "audit_pairs": audit_pairs,
            "audit_agreed": audit_agreed,
        },
        # bucket keys as histogram_buckets makes them: each count's lower bound as a 0 key
        latency={latency_ms * 0.8: 0, latency_ms: frames - 10, latency_ms * 3: 10},
        local_latency={1.0: 0, 2.0: frames},
        confidence={b: n for b, n in confidence.items() if n},
        received_ms=end_ms,
    )


def seed_fleet(
    controller: Controller,
    devices: int,
    reports_each: int,
    now_ms: int,
    seed: int = 0,
    prefix: str = "cam",
) -> SeededFleet:
    """``devices`` registered devices, each with ``reports_each`` reports ending at now_ms."""
    rng = random.Random(seed)
    _store_variant(controller)
    names = [f"{prefix}-{i:04d}" for i in range(devices)]
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


def _store_variant(controller: Controller) -> None:
    """The variant the devices report, as a build stores it (building a real one takes
    minutes): its row, with the validation accuracy and confidence quantiles monitoring reads."""
    with controller.db.session() as s:
        if s.get(VariantRow, VARIANT_ID) is not None:
            return
        model = ModelRow(
            name="fashion-edge", version=1, role="edge", source_sha256="0" * 64, source_size=1,
            input_name="input", input_shape=[1, 1, 28, 28], input_dtype="float32",
            layout="NCHW", output_name="logits", num_classes=10, preprocessing={},
            labels=[str(i) for i in range(10)], validation_sha256="0" * 64,
            build_status="done", created_ms=1,
        )  # fmt: skip
        s.add(model)
        s.flush()
        s.add(
            VariantRow(
                variant_id=VARIANT_ID, model_id=model.id, model="fashion-edge", version=1,
                kind="onnx-int8", runtime="onnxruntime", precision="int8", status="built",
                size_bytes=100_000,
                metrics={"accuracy": 0.9, "confidence_quantiles": {"max_softmax": QUANTILES}},
            )
        )  # fmt: skip
