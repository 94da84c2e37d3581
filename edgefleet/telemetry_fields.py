"""The telemetry counters and histograms, declared once, with their bounds.

The agent's aggregator fills the TelemetryReport fields named here, the controller's decode
reads and range-checks them, and the store's rows, sums and minute rollups iterate over the
same names (``name`` is the attribute of the controller's ReportSample/Totals and the
database column; ``proto`` the TelemetryReport field, dotted for a nested one).

Bounds: a report covers at most a day; a count above ``MAX_COUNT`` in one report (over 11
million a second for a day) is refused, so the sums of a minute rollup stay far inside the
database's signed 64-bit columns (they saturate at ``INT64_MAX`` besides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgefleet.histograms import CONFIDENCE_BOUNDS, LATENCY_BOUNDS_MS

INT64_MAX = 2**63 - 1
MAX_COUNT = 10**12  # per report, for every counter, error kind and histogram bucket
MAX_SPAN_MS = 24 * 3600 * 1000  # one report's interval
MAX_CLOCK_AHEAD_MS = 24 * 3600 * 1000  # a report may end this far after it was received
MAX_BUCKETS = 128  # bounds per histogram (the agent sends 61)
MAX_ERROR_KINDS = 64
MAX_ERROR_KIND_CHARS = 64
MAX_MODEL_CHARS = 128  # the store's column widths
MAX_VARIANT_CHARS = 256
MAX_RSS_BYTES = 2**50  # 1 PiB
MAX_CPU_PERCENT = 100.0 * 1024  # 1024 cores busy


@dataclass(frozen=True)
class CounterField:
    name: str
    proto: str
    help: str
    max: int = MAX_COUNT

    def read(self, message: Any) -> int:
        for part in self.proto.split("."):
            message = getattr(message, part)
        return int(message)

    def write(self, message: Any, value: int) -> None:
        *path, last = self.proto.split(".")
        for part in path:
            message = getattr(message, part)
        setattr(message, last, value)


COUNTERS: tuple[CounterField, ...] = (
    CounterField("frames", "frames", "frames answered, locally or by the cloud"),
    CounterField("offloaded", "offloaded", "hard frames sent to the cloud"),
    CounterField("offload_failures", "offload_failures", "offloads that kept the local answer"),
    CounterField("audited", "audited", "confident frames sent to the cloud for audit"),
    CounterField("skipped", "skipped_frames", "near-duplicate frames skipped"),
    CounterField("bad_frames", "dropped_bad_frames", "malformed frames rejected"),
    CounterField("offload_pairs", "offload_agreement.pairs", "labelled pairs of hard frames"),
    CounterField("offload_agreed", "offload_agreement.agreed", "... where edge and cloud agree"),
    CounterField("audit_pairs", "audit_agreement.pairs", "labelled pairs of audited frames"),
    CounterField("audit_agreed", "audit_agreement.agreed", "... where edge and cloud agree"),
    CounterField("reports_dropped", "reports_dropped", "reports lost to the agent's spool bound"),
    CounterField(
        "audit_skipped_busy", "audit_skipped_busy", "audits not sent: every offload slot busy"
    ),
)
COUNTER_NAMES: tuple[str, ...] = tuple(c.name for c in COUNTERS)


@dataclass(frozen=True)
class HistogramField:
    name: str
    proto: str
    bounds: tuple[float, ...]  # what the agent fills (a report carries its own bounds)
    stored: bool  # kept by the controller (the others are decoded and checked only)


HISTOGRAMS: tuple[HistogramField, ...] = (
    HistogramField("latency", "end_to_end_latency_ms", LATENCY_BOUNDS_MS, stored=True),
    HistogramField("local_latency", "local_latency_ms", LATENCY_BOUNDS_MS, stored=True),
    HistogramField("offload_rtt", "offload_rtt_ms", LATENCY_BOUNDS_MS, stored=False),
    HistogramField("confidence", "confidence", CONFIDENCE_BOUNDS, stored=True),
)
STORED_HISTOGRAMS: tuple[str, ...] = tuple(h.name for h in HISTOGRAMS if h.stored)


def saturating_sum(a: int, b: int) -> int:
    """a + b, at most INT64_MAX (what a 64-bit column holds)."""
    return min(INT64_MAX, a + b)
