"""Pure telemetry arithmetic: report samples, histogram merging, percentiles, accuracy estimates.

No I/O and no generated proto code: the MQTT edge converts a TelemetryReport into a
:class:`ReportSample`; the store sums samples into :class:`Totals` and derives metrics here.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from edgefleet.telemetry_fields import COUNTER_NAMES, STORED_HISTOGRAMS

INF = math.inf
Z95 = 1.959963984540054


@dataclass(frozen=True)
class ReportSample:
    """One validated telemetry report of one device (one aggregation interval)."""

    device_id: str
    start_ms: int
    end_ms: int
    model: str
    variant_id: str
    sequence: int
    counts: Mapping[str, int] = field(default_factory=dict)  # COUNTER_NAMES -> value
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    errors: Mapping[str, int] = field(default_factory=dict)
    # histograms (STORED_HISTOGRAMS) as {upper bound: count}; the overflow bound is math.inf
    latency: Mapping[float, int] = field(default_factory=dict)  # end to end
    local_latency: Mapping[float, int] = field(default_factory=dict)
    confidence: Mapping[float, int] = field(default_factory=dict)  # the edge model's top-1
    received_ms: int = 0

    def count(self, name: str) -> int:
        return int(self.counts.get(name, 0))


def histogram_buckets(bounds: Iterable[float], counts: Iterable[int]) -> dict[float, int]:
    """Fixed-bucket histogram (len(counts) == len(bounds) + 1) as {upper bound: count}.

    Empty buckets are left out, except that each non-empty bucket's lower bound is kept as
    a key with count 0: without it a percentile would interpolate from the previous
    non-empty bucket (or from 0) and read a 0.03 ms model as far slower than it is."""
    b, c = list(bounds), list(counts)
    if len(c) != len(b) + 1:
        raise ValueError(f"histogram has {len(c)} counts for {len(b)} bounds")
    if any(not math.isfinite(x) for x in b) or b != sorted(set(b)):
        raise ValueError("histogram bounds must be finite and strictly increasing")
    out: dict[float, int] = {}
    lowers = [None, *b]
    for lower, upper, count in zip(lowers, [*b, INF], c, strict=True):
        if count:
            if lower is not None:
                out.setdefault(float(lower), 0)
            out[float(upper)] = int(count)
    return out


def snap_to_ladder(buckets: Mapping[float, int], ladder: Sequence[float]) -> dict[float, int]:
    """Buckets re-counted onto `ladder` (each bucket into the ladder bucket holding its upper
    bound), with the same zero-count lower-bound keys as ``histogram_buckets``: the keys of
    any number of snapped histograms stay within the ladder, whatever bounds they came with."""
    out: dict[float, int] = {}
    for upper, count in sorted(buckets.items()):
        if not count:
            continue
        i = bisect.bisect_left(ladder, upper)
        if i > 0:
            out.setdefault(float(ladder[i - 1]), 0)
        key = float(ladder[i]) if i < len(ladder) else INF
        out[key] = out.get(key, 0) + int(count)
    return out


def percentile(buckets: Mapping[float, int], q: float) -> float | None:
    """The q-quantile (0..1) of a bucketed distribution, interpolated inside its bucket.

    A bucket reaches down to the next smaller key (zero-count keys mark lower bounds, see
    ``histogram_buckets``), or to 0 for the smallest."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    target = q * total
    seen, lower = 0, 0.0
    for upper in sorted(buckets):
        count = buckets[upper]
        if count and seen + count >= target:
            if upper == INF:
                return lower  # beyond the last bound: report the last bound
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = upper if upper != INF else lower
    return lower


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there is no data."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Totals:
    """Sums over any set of samples (a device, a cohort, a time window). Its counters are
    the declared ones (edgefleet.telemetry_fields, checked at import), named for arithmetic."""

    reports: int = 0
    frames: int = 0
    offloaded: int = 0
    offload_failures: int = 0
    audited: int = 0
    skipped: int = 0
    bad_frames: int = 0
    offload_pairs: int = 0
    offload_agreed: int = 0
    audit_pairs: int = 0
    audit_agreed: int = 0
    reports_dropped: int = 0
    audit_skipped_busy: int = 0
    first_start_ms: int = 0
    last_end_ms: int = 0
    latency: Counter[float] = field(default_factory=Counter)
    local_latency: Counter[float] = field(default_factory=Counter)
    confidence: Counter[float] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    COUNTS = ("reports", *COUNTER_NAMES)

    def add_sample(self, s: ReportSample) -> None:
        self.add_counts(
            {"reports": 1, **{n: s.count(n) for n in COUNTER_NAMES}},
            s.start_ms,
            s.end_ms,
            s.latency,
            s.local_latency,
            s.errors,
            s.confidence,
        )

    def add_counts(
        self,
        counts: Mapping[str, int],
        start_ms: int,
        end_ms: int,
        latency: Mapping[float, int],
        local_latency: Mapping[float, int],
        errors: Mapping[str, int],
        confidence: Mapping[float, int] | None = None,
    ) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))
        if start_ms and (not self.first_start_ms or start_ms < self.first_start_ms):
            self.first_start_ms = start_ms
        self.last_end_ms = max(self.last_end_ms, end_ms)
        self.latency.update(latency)
        self.local_latency.update(local_latency)
        self.confidence.update(confidence or {})
        self.errors.update(errors)

    @classmethod
    def of(cls, parts: Iterable[Totals]) -> Totals:
        """One sum of ``parts`` (e.g. a device's sums per variant)."""
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def merge(self, other: Totals) -> None:
        self.add_counts(
            {n: getattr(other, n) for n in self.COUNTS},
            other.first_start_ms,
            other.last_end_ms,
            other.latency,
            other.local_latency,
            other.errors,
            other.confidence,
        )


def _check_declared() -> None:
    """Totals and ReportSample carry exactly the declared counters and stored histograms."""
    totals = {f.name for f in fields(Totals)}
    sample = {f.name for f in fields(ReportSample)}
    missing = (set(Totals.COUNTS) | set(STORED_HISTOGRAMS)) - totals
    missing |= set(STORED_HISTOGRAMS) - sample
    if missing:
        raise TypeError(f"telemetry fields not carried: {sorted(missing)}")


_check_declared()


@dataclass(frozen=True)
class AccuracyEstimate:
    """Estimated cascade accuracy, taking the cloud model's answer as the label.

    Frames the cloud answered count as correct; frames answered locally are split into
    confident frames (accuracy estimated from the uniform audit sample) and failed offloads
    (estimated from the offloaded frames' agreement). The interval propagates the Wilson
    intervals of both rates (the estimate is monotone in each).
    """

    value: float | None
    low: float
    high: float
    pairs: int


def cascade_accuracy(t: Totals) -> AccuracyEstimate:
    pairs = t.offload_pairs + t.audit_pairs
    if t.frames <= 0:
        return AccuracyEstimate(None, 0.0, 1.0, pairs)
    answered_by_cloud = max(0, t.offloaded - t.offload_failures)
    confident = max(0, t.frames - t.offloaded)
    failed = max(0, t.offload_failures)

    def share(p_audit: float, p_offload: float) -> float:
        return (answered_by_cloud + confident * p_audit + failed * p_offload) / t.frames

    audit_lo, audit_hi = wilson_interval(t.audit_agreed, t.audit_pairs)
    off_lo, off_hi = wilson_interval(t.offload_agreed, t.offload_pairs)
    p_audit = t.audit_agreed / t.audit_pairs if t.audit_pairs else None
    p_off = t.offload_agreed / t.offload_pairs if t.offload_pairs else None
    needs_audit, needs_off = confident > 0, failed > 0
    value = None
    if (p_audit is not None or not needs_audit) and (p_off is not None or not needs_off):
        value = share(p_audit or 0.0, p_off or 0.0)
    return AccuracyEstimate(value, share(audit_lo, off_lo), share(audit_hi, off_hi), pairs)


def agreement(t: Totals) -> tuple[float | None, int]:
    """Edge/cloud agreement over every labelled pair (offloaded + audit) and the pair count."""
    pairs = t.offload_pairs + t.audit_pairs
    agreed = t.offload_agreed + t.audit_agreed
    return (agreed / pairs if pairs else None), pairs


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None
