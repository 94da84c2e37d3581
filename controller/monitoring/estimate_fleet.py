"""Estimates over several parts (variants, devices) and the adaptive audit rate's arithmetic
(controller.monitoring.estimate). Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from controller.monitoring.estimate import (
    HEADLINE_CBPE,
    HEADLINE_PAIRS,
    UNKNOWN,
    Z95,
    AccuracyEstimate,
    Evidence,
)


def audit_fraction_needed(
    estimate: AccuracyEstimate,
    confident_frames_per_s: float,
    window_s: float,
    target_half_width: float = 0.05,
    max_audits_per_s: float = 1.0,
    floor: float = 0.02,
) -> tuple[float, str]:
    """The audit fraction (of confident frames) that brings the interval's half width to
    ``target_half_width`` over ``window_s``, within ``max_audits_per_s``; and why.

    The audit pairs carry ``audit_variance_weight**2 * p(1 - p) / n`` of the variance; the
    rest (table, offload pairs) does not shrink with audits."""
    if confident_frames_per_s <= 0 or window_s <= 0:
        return floor, "no confident frames measured yet: the default fraction"
    cap = min(1.0, max_audits_per_s / confident_frames_per_s)
    target_var = (target_half_width / Z95) ** 2
    room = target_var - estimate.other_variance
    if room <= 0:
        return min(cap, max(floor, 0.1)), (
            "the target is out of reach by audits alone: the table and offload pairs carry "
            f"±{Z95 * math.sqrt(estimate.other_variance) * 100:.1f} pp"
        )
    p = estimate.pairs_value if estimate.pairs_value is not None else 0.9
    p = min(0.99, max(0.5, p))
    d = estimate.audit_variance_weight or 0.8
    needed_pairs = d * d * p * (1 - p) / room
    fraction = needed_pairs / (confident_frames_per_s * window_s)
    if fraction > cap:
        return cap, f"capped by the audit budget ({max_audits_per_s:g} frames/s per device)"
    return max(
        floor, fraction
    ), f"{needed_pairs:.0f} audit pairs per window reach ±{target_half_width * 100:g} pp"


def fleet_audit_fractions(
    wanted: Mapping[str, tuple[float, float]], max_fleet_audits_per_s: float
) -> dict[str, float]:
    """device -> (fraction wanted, confident frames/s): every fraction scaled down alike
    when the fleet's audits would exceed ``max_fleet_audits_per_s``."""
    load = sum(f * fps for f, fps in wanted.values())
    scale = min(1.0, max_fleet_audits_per_s / load) if load > 0 else 1.0
    return {d: f * scale for d, (f, _fps) in wanted.items()}


def combine(parts: Sequence[tuple[int, AccuracyEstimate]]) -> AccuracyEstimate:
    """One estimate over several (frames, estimate) parts, e.g. the variants a device or a
    cohort ran in the window: frame-weighted values, independent variances."""
    parts = [(n, e) for n, e in parts if n > 0]
    if not parts:
        return UNKNOWN
    if len(parts) == 1:
        return parts[0][1]
    total = sum(n for n, _ in parts)

    def mix(get: str, low: str, high: str) -> tuple[float | None, float, float]:
        values = [getattr(e, get) for _, e in parts]
        if any(v is None for v in values):
            return None, 0.0, 1.0
        value = sum(n * v for (n, _), v in zip(parts, values, strict=True)) / total
        centre = sum(n * (getattr(e, low) + getattr(e, high)) / 2 for n, e in parts) / total
        half = math.sqrt(
            sum((n / total * (getattr(e, high) - getattr(e, low)) / 2) ** 2 for n, e in parts)
        )
        return value, max(0.0, centre - half), min(1.0, centre + half)

    pv, pl, ph = mix("pairs_value", "pairs_low", "pairs_high")
    cv, cl, ch = mix("cbpe_value", "cbpe_low", "cbpe_high")
    headline = HEADLINE_PAIRS if pv is not None else HEADLINE_CBPE
    value, low, high = (pv, pl, ph) if pv is not None else (cv, cl, ch)
    evs = [(n, e.evidence) for n, e in parts if e.evidence is not None]
    evidence = None
    if evs:
        keys_f = {k for _, ev in evs for k in ev.frames_share}
        keys_v = {k for _, ev in evs for k in ev.variance_share}
        evidence = Evidence(
            audit_pairs=sum(ev.audit_pairs for _, ev in evs),
            offload_pairs=sum(ev.offload_pairs for _, ev in evs),
            labelled_pairs=max(ev.labelled_pairs for _, ev in evs),
            validation_frames=max(ev.validation_frames for _, ev in evs),
            frames_share={
                k: sum(n * ev.frames_share.get(k, 0.0) for n, ev in evs) / total for k in keys_f
            },
            variance_share={
                k: sum(n * ev.variance_share.get(k, 0.0) for n, ev in evs) / total for k in keys_v
            },
        )
    return AccuracyEstimate(
        value, low, high, sum(e.pairs for _, e in parts), headline,
        f"{len(parts)} variants combined: " + parts[0][1].why,
        pv, pl, ph, cv, cl, ch, evidence,
        sum(n * e.audit_variance_weight for n, e in parts) / total,
        sum((n / total) ** 2 * e.other_variance for n, e in parts),
    )  # fmt: skip
