"""Choose one variant per hardware profile. Pure: evaluations and profiles in, decisions out.

A variant is ruled out, in this order, when its runtime is not on the profile, its precision
is not supported (an integer-only profile takes only full-int8 models; ONNX Runtime or OpenVINO
int8 on a reduce-range profile needs 7-bit weights), its file is over the size budget, its
estimated memory is over the memory budget, or its accuracy drop is over the profile's budget.
Only profiles that list "openvino" in their runtimes (the ``*-openvino`` ones) take OpenVINO
variants; they compete by measured interval like every other.

The rest compete on latency, each an estimate with an interval. On the controller host the
estimate is the variant's median round ratio to the fp32 baseline times the pooled baseline
median; the interval is +- ``z`` standard errors of that median, from the noise of the whole
build at that thread count (pooled over every variant's rounds: one steady number per build,
where a variant's own five rounds would make the margin itself noisy), and never narrower
than +- ``floor``. Each round runs on its own pair of runtime sessions (two ORT thread pools
share a small busy host's cores differently every time they are made), so the pooled noise
includes the session-to-session part; the floor covers what no round on this host can see
(how far interleaved timing on the controller is from a device running one model alone) and
the luck of a few rounds. A device's own measurement (a median, no spread) gets an assumed
+- ``point_noise``; so do measurements from before rounds.

One variant *beats* another only when their intervals do not overlap: it is faster by more
than the noise. Every variant that no other variant beats is in the fastest group; the
smallest compressed file of the group wins (then the smaller accuracy drop, then the name).
Membership is pairwise against *every* candidate, not against whichever looks fastest in
this build, so a chain A~B~C cannot flip on noise between A and B: C is out exactly when
some variant clearly beats it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from controller.optimize.latency import INTERVAL_Z, sigma_from_pairs, standard_error
from edgefleet.profiles import HardwareProfile

if TYPE_CHECKING:  # only the type: keeps this module free of the build's heavy imports
    from controller.optimize.evaluate import Evaluation

HOST_ESTIMATE = "controller-estimate"
DEVICE = "device"

# How select_for_profile's reasons start for variants that fit but lost on latency or size.
TOO_CLOSE = "too close to"
SLOWER = "slower than"


@dataclass(frozen=True)
class NoiseRule:
    """How wide a latency's interval is (relative half-widths, in log space)."""

    z: float = INTERVAL_Z  # standard errors either side of a median
    floor: float = 0.05  # no latency is known better than +-5%: a win needs ~10%
    point_noise: float = 0.075  # for a median with no spread (devices, old reports)


@dataclass(frozen=True)
class LatencyEstimate:
    """A latency in ms with the interval it is known to."""

    ms: float
    lo_ms: float
    hi_ms: float
    source: str = HOST_ESTIMATE
    measured: bool = True  # False: the interval is the assumed ``point_noise``

    @classmethod
    def around(
        cls, ms: float, half: float, source: str = HOST_ESTIMATE, measured: bool = True
    ) -> LatencyEstimate:
        """``ms`` times exp(-half) .. exp(half)."""
        return cls(ms, ms * math.exp(-half), ms * math.exp(half), source, measured)

    def beats(self, other: LatencyEstimate) -> bool:
        """Faster than ``other`` by more than the noise of either: the intervals are apart."""
        return self.hi_ms < other.lo_ms

    def describe(self) -> str:
        kind = "" if self.measured else " assumed"
        return f"{_ms(self.ms)} ms [{_ms(self.lo_ms)}..{_ms(self.hi_ms)}{kind}]"


@dataclass(frozen=True)
class Selection:
    """The variant chosen for one profile (None if nothing fits) and why the others lost.

    ``too_close`` lists the variants that no measurement could separate from the chosen one
    (they lost on compressed size); their reasons in ``rejected`` start with ``TOO_CLOSE``,
    those of clearly slower ones with ``SLOWER``.
    """

    profile: str
    variant: str | None
    latency_ms: float | None = None
    latency_source: str = HOST_ESTIMATE
    rejected: dict[str, str] = field(default_factory=dict)
    latency_interval_ms: tuple[float, float] | None = None
    too_close: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_interval_ms"] = (
            list(self.latency_interval_ms) if self.latency_interval_ms else None
        )
        data["too_close"] = list(self.too_close)
        return data


@dataclass(frozen=True, eq=False)  # compared by identity
class _Candidate:
    ev: Evaluation
    latency: LatencyEstimate

    @property
    def preference(self) -> tuple[int, float, str]:
        """Inside the fastest group: smallest compressed, then least accuracy lost, then name."""
        return self.ev.zstd_bytes, self.ev.accuracy_drop_pp, self.ev.variant


def _ms(value: float) -> str:
    return f"{value:.4g}"


def _precision_problem(ev: Evaluation, profile: HardwareProfile) -> str | None:
    if profile.integer_only and not ev.full_integer:
        return "profile is integer-only and needs a full-int8 model"
    needed = {"mixed": {"int8", "fp32"}}.get(ev.precision, {ev.precision})
    if missing := needed - set(profile.precisions):
        return (
            f"precision {ev.precision} not supported (profile lacks {', '.join(sorted(missing))})"
        )
    if (
        ev.runtime in ("onnxruntime", "openvino")  # both run a QDQ ONNX model's int8 kernels
        and ev.precision in ("int8", "mixed")
        and profile.int8_reduce_range
        and not ev.reduce_range
    ):
        return "profile needs reduce_range int8 weights (no VNNI: 8-bit weights can overflow)"
    return None


def _fit_problem(ev: Evaluation, profile: HardwareProfile, budget: float) -> str | None:
    if ev.runtime not in profile.runtimes:
        return f"runtime {ev.runtime} not on this profile ({', '.join(profile.runtimes)})"
    if problem := _precision_problem(ev, profile):
        return problem
    if ev.size_bytes > profile.model_size_budget_bytes:
        return f"file size {ev.size_bytes} B over the budget of {profile.model_size_budget_bytes} B"
    if ev.estimated_memory_bytes > profile.memory_budget_bytes:
        return (
            f"estimated memory {ev.estimated_memory_bytes} B over the budget of "
            f"{profile.memory_budget_bytes} B"
        )
    if ev.accuracy_drop_pp > budget:
        return f"accuracy drop {ev.accuracy_drop_pp:.2f} pp over the budget of {budget} pp"
    return None


def _pooled_baselines(evaluations: Sequence[Evaluation]) -> dict[int, float]:
    by_threads: dict[int, list[float]] = {}
    for ev in evaluations:
        for threads, lat in ev.latency.items():
            by_threads.setdefault(threads, []).append(lat.baseline_median_ms)
    return {t: float(statistics.median(v)) for t, v in by_threads.items()}


def pooled_noise(evaluations: Sequence[Evaluation]) -> dict[int, float]:
    """Per thread count, the build's noise per round (log-ratio sigma), pooled over the round
    pairs of every variant measured there; thread counts without rounds are absent."""
    by_threads: dict[int, list[float]] = {}
    for ev in evaluations:
        for threads, lat in ev.latency.items():
            by_threads.setdefault(threads, []).extend(lat.pair_spreads())
    return {
        t: sigma
        for t, spreads in by_threads.items()
        if (sigma := sigma_from_pairs(spreads)) is not None
    }


def host_estimate(
    ev: Evaluation,
    threads: int,
    pooled_ms: Mapping[int, float],
    noise: Mapping[int, float],
    rule: NoiseRule = NoiseRule(),
) -> LatencyEstimate | None:
    """Variant/baseline ratio (measured side by side) times the pooled baseline median, +- the
    build's noise at that thread count (``point_noise`` when nothing says what it is)."""
    lat = ev.latency_at(threads)
    if lat is None:
        return None
    ms = lat.ratio * pooled_ms.get(lat.threads, lat.baseline_median_ms)
    sigma = noise.get(lat.threads)
    if not lat.has_interval or sigma is None:
        return LatencyEstimate.around(ms, rule.point_noise, measured=False)
    half = rule.z * standard_error(sigma, len(lat.round_ratios))
    return LatencyEstimate.around(ms, max(rule.floor, half))


def _fastest_group(candidates: Sequence[_Candidate]) -> list[_Candidate]:
    """Every candidate that no candidate beats (never empty: nothing beats the lowest median
    of equally wide intervals; with unequal ones, nothing beats the lowest upper bound)."""
    return [c for c in candidates if not any(o.latency.beats(c.latency) for o in candidates)]


def _lost_on_size(loser: _Candidate, chosen: _Candidate) -> str:
    a, b = loser.ev, chosen.ev
    if a.zstd_bytes != b.zstd_bytes:
        why = f"larger compressed ({a.zstd_bytes} B vs {b.zstd_bytes} B)"
    elif a.accuracy_drop_pp != b.accuracy_drop_pp:
        why = (
            f"same compressed size, larger accuracy drop "
            f"({a.accuracy_drop_pp:.2f} pp vs {b.accuracy_drop_pp:.2f} pp)"
        )
    else:
        why = f"same compressed size and accuracy drop, {b.variant} first by name"
    return (
        f"{TOO_CLOSE} {b.variant} to separate (intervals {loser.latency.describe()} vs "
        f"{chosen.latency.describe()}), {why}"
    )


def _lost_on_speed(loser: _Candidate, chosen: _Candidate, beaters: list[_Candidate]) -> str:
    """Name the chosen variant when it is one that is clearly faster, else the fastest."""
    if chosen in beaters:
        winner = chosen
    else:
        winner = min(beaters, key=lambda c: (c.latency.ms, c.ev.variant))
    return (
        f"{SLOWER} {winner.ev.variant} ({loser.latency.describe()} vs {winner.latency.describe()})"
    )


def select_for_profile(
    evaluations: Sequence[Evaluation],
    profile: HardwareProfile,
    *,
    accuracy_budget_pp: float | None = None,
    device_latencies: Mapping[str, float] | None = None,
    noise_rule: NoiseRule = NoiseRule(),
) -> Selection:
    budget = profile.accuracy_budget_pp if accuracy_budget_pp is None else accuracy_budget_pp
    pooled_ms = _pooled_baselines(evaluations)
    noise = pooled_noise(evaluations)
    rejected: dict[str, str] = {}
    candidates: list[_Candidate] = []
    for ev in evaluations:
        problem = _fit_problem(ev, profile, budget)
        if problem is None:
            estimate: LatencyEstimate | None
            if device_latencies and ev.variant in device_latencies:
                ms = float(device_latencies[ev.variant])
                estimate = LatencyEstimate.around(ms, noise_rule.point_noise, DEVICE, False)
            else:
                estimate = host_estimate(ev, profile.threads, pooled_ms, noise, noise_rule)
            if estimate is not None:
                candidates.append(_Candidate(ev, estimate))
                continue
            problem = "no latency measurement"
        rejected[ev.variant] = problem
    if not candidates:
        return Selection(profile=profile.name, variant=None, rejected=rejected)

    group = _fastest_group(candidates)
    chosen = min(group, key=lambda c: c.preference)
    for c in candidates:
        if c is chosen:
            continue
        if c in group:
            rejected[c.ev.variant] = _lost_on_size(c, chosen)
        else:
            beaters = [o for o in candidates if o.latency.beats(c.latency)]
            rejected[c.ev.variant] = _lost_on_speed(c, chosen, beaters)
    return Selection(
        profile=profile.name,
        variant=chosen.ev.variant,
        latency_ms=chosen.latency.ms,
        latency_source=chosen.latency.source,
        rejected=rejected,
        latency_interval_ms=(chosen.latency.lo_ms, chosen.latency.hi_ms),
        too_close=tuple(sorted(c.ev.variant for c in group if c is not chosen)),
    )


def select_variants(
    evaluations: Sequence[Evaluation],
    profiles: Iterable[HardwareProfile],
    *,
    accuracy_budget_pp: float | None = None,
    device_latencies: Mapping[str, Mapping[str, float]] | None = None,
    noise_rule: NoiseRule = NoiseRule(),
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
            noise_rule=noise_rule,
        )
        for profile in profiles
    }
