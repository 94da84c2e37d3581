"""Cohort metrics for rollout gates, from the telemetry store.

The canary cohort is the rollout's devices that run the new variant; the control cohort is
the targeted devices of the same profiles not picked yet (still on the old version); the
pre-rollout cohort is the canary devices before the rollout started (used when no control
cohort exists, e.g. at the last stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from controller.rollout import CohortMetrics, GateInputs, RolloutState

CANARY_STATES = frozenset({"installed", "healthy"})
# Gate metric name -> the telemetry CohortMetrics attribute it reads. ``p95_latency`` is the
# on-device inference latency (the local histogram): end to end includes the cloud round
# trips of offloaded frames, whose noise says nothing about the new model.
_FIELDS = {
    "p95_latency": "local_p95_ms",
    "p50_latency": "local_p50_ms",
    "p95_e2e_latency": "p95_latency_ms",
    "p50_e2e_latency": "p50_latency_ms",
    "agreement": "agreement",
    "error_rate": "error_rate",
    "offload_rate": "offload_rate",
    "offload_failure_rate": "offload_failure_rate",
}


class MetricsSource(Protocol):
    """``TelemetryStore.cohort_metrics``."""

    def cohort_metrics(
        self, device_ids: Sequence[str], since_ms: int, until_ms: int | None = None
    ) -> Any: ...


def to_gate_metrics(m: Any) -> CohortMetrics:
    """Telemetry's cohort metrics -> the gates' ``CohortMetrics`` (missing values omitted)."""
    if m is None:
        return CohortMetrics()
    values: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for name, attr in _FIELDS.items():
        v = getattr(m, attr, None)
        if v is not None:
            values[name] = float(v)
    accuracy = getattr(m, "accuracy", None)  # telemetry_math.AccuracyEstimate
    if accuracy is not None:
        if accuracy.value is not None:
            values["estimated_accuracy"] = float(accuracy.value)
        intervals["estimated_accuracy"] = (float(accuracy.low), float(accuracy.high))
    frames = int(getattr(m, "frames", 0) or 0)
    devices = int(getattr(m, "devices_reporting", getattr(m, "devices", 0)) or 0)
    return CohortMetrics(values, frames, devices, intervals)


def gate_inputs(
    source: MetricsSource,
    state: RolloutState,
    created_ms: int,
    soak_started_at: float,
    now: float,
) -> GateInputs | None:
    canary = [d for d in state.devices if d.stage >= 0 and d.state in CANARY_STATES]
    if not canary:
        return None
    profiles = {d.profile for d in canary}
    control = [
        d.device_id
        for d in state.devices
        if d.stage < 0 and d.state == "pending" and d.profile in profiles
    ]
    since_ms, until_ms = int(soak_started_at * 1000), int(now * 1000)
    ids = [d.device_id for d in canary]
    canary_m = to_gate_metrics(source.cohort_metrics(ids, since_ms, until_ms))
    control_m = (
        to_gate_metrics(source.cohort_metrics(control, since_ms, until_ms)) if control else None
    )
    window = max(until_ms - since_ms, 1)
    pre = to_gate_metrics(source.cohort_metrics(ids, created_ms - window, created_ms))
    return GateInputs(canary_m, control_m, pre if pre.samples else None)
