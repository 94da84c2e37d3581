"""Choose one variant per hardware profile. Pure: evaluations and profiles in, decisions out.

A variant is ruled out, in this order, when its runtime is not on the profile, its precision
is not supported (an integer-only profile takes only full-int8 models; ONNX Runtime int8 on a
reduce-range profile needs 7-bit weights), its file is over the size budget, its estimated
memory is over the memory budget, or its accuracy drop is over the profile's budget. The
fastest of the rest wins; variants within ``tie_tolerance`` of it go to the smallest
compressed size. Latency on the controller host is estimated as the variant's ratio to the
fp32 baseline times the pooled baseline median; a device's own measurement replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from controller.build.evaluate import Evaluation
from edgefleet.profiles import HardwareProfile

HOST_ESTIMATE = "controller-estimate"
DEVICE = "device"


@dataclass(frozen=True)
class Selection:
    """The variant chosen for one profile (None if nothing fits) and why the others lost."""

    profile: str
    variant: str | None
    latency_ms: float | None = None
    latency_source: str = HOST_ESTIMATE
    rejected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _precision_problem(ev: Evaluation, profile: HardwareProfile) -> str | None:
    if profile.integer_only and not ev.full_integer:
        return "profile is integer-only and needs a full-int8 model"
    needed = {"mixed": {"int8", "fp32"}}.get(ev.precision, {ev.precision})
    if missing := needed - set(profile.precisions):
        return (
            f"precision {ev.precision} not supported (profile lacks {', '.join(sorted(missing))})"
        )
    if (
        ev.runtime == "onnxruntime"
        and ev.precision in ("int8", "mixed")
        and profile.int8_reduce_range
        and not ev.reduce_range
    ):
        return "profile needs reduce_range int8 weights (no VNNI: 8-bit weights can overflow)"
    return None


def _pooled_baselines(evaluations: Sequence[Evaluation]) -> dict[int, float]:
    by_threads: dict[int, list[float]] = {}
    for ev in evaluations:
        for threads, lat in ev.latency.items():
            by_threads.setdefault(threads, []).append(lat.baseline_median_ms)
    return {t: float(np.median(v)) for t, v in by_threads.items()}


def host_latency_ms(ev: Evaluation, threads: int, pooled: Mapping[int, float]) -> float | None:
    """Variant/baseline ratio (measured side by side) times the pooled baseline median."""
    lat = ev.latency_at(threads)
    if lat is None:
        return None
    return lat.ratio * pooled.get(lat.threads, lat.baseline_median_ms)


def select_for_profile(
    evaluations: Sequence[Evaluation],
    profile: HardwareProfile,
    *,
    accuracy_budget_pp: float | None = None,
    device_latencies: Mapping[str, float] | None = None,
    tie_tolerance: float = 0.03,
) -> Selection:
    budget = profile.accuracy_budget_pp if accuracy_budget_pp is None else accuracy_budget_pp
    pooled = _pooled_baselines(evaluations)
    rejected: dict[str, str] = {}
    candidates: list[tuple[Evaluation, float, str]] = []
    for ev in evaluations:
        problem = None
        if ev.runtime not in profile.runtimes:
            problem = f"runtime {ev.runtime} not on this profile ({', '.join(profile.runtimes)})"
        else:
            problem = _precision_problem(ev, profile)
        if problem is None and ev.size_bytes > profile.model_size_budget_bytes:
            problem = (
                f"file size {ev.size_bytes} B over the budget of "
                f"{profile.model_size_budget_bytes} B"
            )
        if problem is None and ev.estimated_memory_bytes > profile.memory_budget_bytes:
            problem = (
                f"estimated memory {ev.estimated_memory_bytes} B over the budget of "
                f"{profile.memory_budget_bytes} B"
            )
        if problem is None and ev.accuracy_drop_pp > budget:
            problem = f"accuracy drop {ev.accuracy_drop_pp:.2f} pp over the budget of {budget} pp"
        if problem is None:
            if device_latencies and ev.variant in device_latencies:
                candidates.append((ev, float(device_latencies[ev.variant]), DEVICE))
            elif (ms := host_latency_ms(ev, profile.threads, pooled)) is not None:
                candidates.append((ev, ms, HOST_ESTIMATE))
            else:
                problem = "no latency measurement"
        if problem is not None:
            rejected[ev.variant] = problem
    if not candidates:
        return Selection(profile=profile.name, variant=None, rejected=rejected)

    fastest = min(ms for _, ms, _ in candidates)
    tied = [c for c in candidates if c[1] <= fastest * (1.0 + tie_tolerance)]
    chosen, chosen_ms, source = min(tied, key=lambda c: (c[0].zstd_bytes, c[1]))
    for ev, ms, _ in candidates:
        if ev is chosen:
            continue
        if ms <= fastest * (1.0 + tie_tolerance):
            rejected[ev.variant] = (
                f"as fast as {chosen.variant} (within {tie_tolerance:.0%}) "
                f"but larger compressed ({ev.zstd_bytes} B vs "
                f"{chosen.zstd_bytes} B)"
            )
        else:
            rejected[ev.variant] = (
                f"slower than {chosen.variant} ({ms:.3f} ms vs {chosen_ms:.3f} ms)"
            )
    return Selection(
        profile=profile.name,
        variant=chosen.variant,
        latency_ms=chosen_ms,
        latency_source=source,
        rejected=rejected,
    )


def select_variants(
    evaluations: Sequence[Evaluation],
    profiles: Iterable[HardwareProfile],
    *,
    accuracy_budget_pp: float | None = None,
    device_latencies: Mapping[str, Mapping[str, float]] | None = None,
    tie_tolerance: float = 0.03,
) -> dict[str, Selection]:
    """One ``Selection`` per profile name.

    ``accuracy_budget_pp`` overrides every profile's own budget; ``device_latencies`` maps
    profile name -> variant name -> median ms measured on such devices.
    """
    device_latencies = device_latencies or {}
    return {
        profile.name: select_for_profile(
            evaluations,
            profile,
            accuracy_budget_pp=accuracy_budget_pp,
            device_latencies=device_latencies.get(profile.name),
            tie_tolerance=tie_tolerance,
        )
        for profile in profiles
    }
