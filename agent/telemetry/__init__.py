"""Telemetry: per-interval aggregation into TelemetryReport and a bounded disk spool."""

from agent.telemetry.aggregator import (
    CONFIDENCE_BOUNDS,
    LATENCY_BOUNDS_MS,
    Histogram,
    TelemetryAggregator,
)
from agent.telemetry.spool import DiskSpool, SpoolError

__all__ = [
    "CONFIDENCE_BOUNDS",
    "LATENCY_BOUNDS_MS",
    "DiskSpool",
    "Histogram",
    "SpoolError",
    "TelemetryAggregator",
]
