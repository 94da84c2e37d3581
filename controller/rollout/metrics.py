"""The metrics a health gate can name: what each one measures and where it comes from.

Only metrics the controller can actually compute are listed, so a gate on anything else is
refused when the rollout starts instead of waiting forever. There is no drift score: the
controller does not keep the agents' confidence histograms, so nothing could compute one.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.rollout.errors import InvalidGate


@dataclass(frozen=True)
class GateMetric:
    name: str
    description: str
    # Interval metrics come with a 95% interval; a gate on one passes only when the whole
    # interval satisfies it, fails only when none of it does, and otherwise waits.
    interval: bool = False


GATE_METRICS: dict[str, GateMetric] = {
    m.name: m
    for m in (
        GateMetric("p95_latency", "on-device inference latency, 95th percentile (ms)"),
        GateMetric("p50_latency", "on-device inference latency, median (ms)"),
        GateMetric("p95_e2e_latency", "end-to-end latency incl. cloud round trips, p95 (ms)"),
        GateMetric("p50_e2e_latency", "end-to-end latency incl. cloud round trips, median (ms)"),
        GateMetric("estimated_accuracy", "estimated cascade accuracy (95% interval)", True),
        GateMetric("agreement", "edge/cloud agreement over offloaded and audited frames"),
        GateMetric("error_rate", "device errors and bad frames per frame"),
        GateMetric("offload_rate", "share of frames offloaded to the cloud"),
        GateMetric("offload_failure_rate", "failed offloads per offloaded frame"),
        GateMetric("install_failure_rate", "failed installs per attempted device"),
    )
}


def known_metrics() -> str:
    return ", ".join(GATE_METRICS)


def check_metric(gate_text: str, metric: str) -> GateMetric:
    """The catalogue entry for ``metric``; ``InvalidGate`` naming the known ones otherwise."""
    found = GATE_METRICS.get(metric)
    if found is None:
        raise InvalidGate(
            f"gate {gate_text!r}: unknown metric {metric!r}; known metrics: {known_metrics()}"
        )
    return found
