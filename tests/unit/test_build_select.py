"""Per-profile selection rules, on synthetic evaluations (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from controller.optimize.evaluate import Evaluation, Latency
from controller.optimize.select import (
    DEVICE,
    HOST_ESTIMATE,
    SLOWER,
    TOO_CLOSE,
    LatencyEstimate,
    NoiseRule,
    select_variants,
)
from edgefleet.profiles import BUILTIN_PROFILES, MB, HardwareProfile

CPU = HardwareProfile(
    name="cpu",
    description="test",
    runtimes=("onnxruntime", "litert"),
    precisions=("fp32", "fp16", "int8"),
    memory_budget_bytes=512 * MB,
    model_size_budget_bytes=10 * MB,
    threads=1,
)


def ev(
    name: str,
    ms: float,
    *,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    size: int = 1 * MB,
    zstd: int | None = None,
    drop: float = 0.0,
    baseline: float = 1.0,
    memory: int = 100 * MB,
    full_integer: bool = False,
    reduce_range: bool = False,
    rounds: tuple[float, ...] | None = None,
) -> Evaluation:
    """``rounds``: per-round ratios to the baseline (default: ±1% around ms/baseline; ``()``:
    a measurement from before rounds, no interval)."""
    if rounds is None:
        ratio = ms / baseline
        rounds = (ratio * 0.99, ratio, ratio * 1.01)
    return Evaluation(
        variant=name,
        runtime=runtime,
        precision=precision,
        size_bytes=size,
        zstd_bytes=zstd if zstd is not None else size,
        accuracy=0.9,
        accuracy_drop_pp=drop,
        agreement=1.0,
        temperature=1.0,
        ece=0.01,
        estimated_memory_bytes=memory,
        latency={1: Latency(1, ms, ms * 1.1, baseline, baseline * 1.1, rounds)},
        full_integer=full_integer,
        reduce_range=reduce_range,
    )


def pick(evaluations: list[Evaluation], profile: HardwareProfile = CPU, **kw: object):
    return select_variants(evaluations, [profile], **kw)[profile.name]  # type: ignore[arg-type]


def spread(lo: float, mid: float, hi: float) -> tuple[float, ...]:
    """Five round ratios with this min, median and max."""
    return (lo, (lo + mid) / 2, mid, (mid + hi) / 2, hi)


FLOOR = math.exp(0.05)  # the default +-5% floor of an interval


def test_fastest_wins_and_slower_ones_say_why() -> None:
    sel = pick([ev("a", 2.0), ev("b", 1.0), ev("c", 3.0)])
    assert sel.variant == "b" and sel.latency_source == HOST_ESTIMATE
    assert sel.latency_ms == 1.0
    assert sel.latency_interval_ms == pytest.approx((1 / FLOOR, FLOOR))
    assert sel.rejected["a"] == "slower than b (2 ms [1.902..2.103] vs 1 ms [0.9512..1.051])"
    assert set(sel.rejected) == {"a", "c"} and sel.too_close == ()


def test_overlapping_intervals_tie_and_size_decides_whichever_median_is_lower() -> None:
    for big_median, small_median in ((1.00, 1.06), (1.06, 1.00)):
        sel = pick(
            [
                ev("big", big_median, zstd=900, rounds=spread(0.85, big_median, 1.2)),
                ev("small", small_median, zstd=300, rounds=spread(0.9, small_median, 1.25)),
            ]
        )
        assert sel.variant == "small" and sel.too_close == ("big",)
        why = sel.rejected["big"]
        assert why.startswith(f"{TOO_CLOSE} small to separate (intervals 1")
        assert why.endswith("larger compressed (900 B vs 300 B)")


def test_the_build_noise_widens_every_interval() -> None:
    # Alone, 1.0 vs 1.2 (tight rounds) separates; a noisy third variant measured in the same
    # build says the machine was noisy, so the same pair becomes a tie.
    quiet = [ev("fast-big", 1.0, zstd=900), ev("slow-small", 1.2, zstd=100)]
    assert pick(quiet).variant == "fast-big"
    noisy = ev("noisy", 3.0, rounds=(2.0, 2.5, 3.0, 3.5, 4.0))
    assert pick([*quiet, noisy, replace(noisy, variant="noisy-2")]).variant == "slow-small"


def test_tight_intervals_still_need_the_floor() -> None:
    # Rounds agree to 0.5%, medians 8% apart: under the +-5% floor, so not a win.
    sel = pick(
        [
            ev("fast-big", 1.00, zstd=900, rounds=spread(0.995, 1.00, 1.005)),
            ev("close-small", 1.08, zstd=300, rounds=spread(1.075, 1.08, 1.085)),
            ev("slow-tiny", 1.25, zstd=100),
        ]
    )
    assert sel.variant == "close-small" and sel.too_close == ("fast-big",)
    assert "larger compressed" in sel.rejected["fast-big"]
    assert sel.rejected["slow-tiny"].startswith(f"{SLOWER} close-small (1.25 ms [")
    sharper = pick([ev("a", 1.0), ev("b", 1.08, zstd=1)], noise_rule=NoiseRule(floor=0.02))
    assert sharper.variant == "a"


def test_clearly_faster_wins_over_smaller() -> None:
    sel = pick([ev("fast-big", 1.0, zstd=900), ev("slow-small", 1.3, zstd=100)])
    assert sel.variant == "fast-big" and sel.too_close == ()
    assert sel.rejected["slow-small"].startswith("slower than fast-big (1.3 ms [1.237..1.367]")


def test_chain_membership_does_not_depend_on_who_looks_fastest() -> None:
    # a ~ b and b ~ c, but a clearly beats c. Whichever of a and b has the lower median this
    # build, c (the smallest) stays out and b (smaller than a) wins.
    for a_mid, b_mid in ((1.00, 1.08), (1.08, 1.00), (1.02, 1.06), (1.04, 1.02)):
        sel = pick([ev("a", a_mid, zstd=900), ev("b", b_mid, zstd=500), ev("c", 1.15, zstd=100)])
        assert sel.variant == "b" and sel.too_close == ("a",), (a_mid, b_mid)
        faster = "a" if a_mid < b_mid else "b"
        assert sel.rejected["c"].startswith(f"{SLOWER} {faster} (1.15 ms ["), (a_mid, b_mid)
    # When the noise is wider than the whole chain, it is one group.
    loose = pick(
        [
            ev("a", 1.00, zstd=900, rounds=spread(0.85, 1.00, 1.2)),
            ev("b", 1.08, zstd=500, rounds=spread(0.9, 1.08, 1.25)),
            ev("c", 1.15, zstd=100, rounds=spread(0.95, 1.15, 1.35)),
        ]
    )
    assert loose.variant == "c" and loose.too_close == ("a", "b")


def test_same_truth_same_choice_across_noisy_builds() -> None:
    """Simulated builds with 4% noise per round: near-equal variants always tie (size
    decides), clearly different ones always separate."""
    truth = {"fp32": 1.00, "pruned": 1.01, "clustered": 0.99, "int8": 1.35, "fp16": 1.6}
    zstd = {"fp32": 900, "pruned": 400, "clustered": 500, "int8": 250, "fp16": 450}
    rng = np.random.default_rng(7)
    chosen = set()
    for _ in range(30):
        build = []
        for name, ratio in truth.items():
            rounds = tuple(float(r) for r in ratio * np.exp(0.04 * rng.standard_normal(5)))
            build.append(ev(name, ratio, zstd=zstd[name], rounds=rounds))
        sel = pick(build)
        chosen.add((sel.variant, sel.too_close))
    assert chosen == {("pruned", ("clustered", "fp32"))}


def test_device_latencies_get_an_assumed_margin() -> None:
    host = [ev("a", 1.0, zstd=900), ev("b", 1.0, zstd=100)]
    close = pick(host, device_latencies={"cpu": {"a": 0.40, "b": 0.45}})
    assert close.variant == "b" and close.latency_source == DEVICE
    assert close.rejected["a"].startswith(f"{TOO_CLOSE} b")
    assert "assumed" in close.rejected["a"]
    apart = pick(host, device_latencies={"cpu": {"a": 0.40, "b": 0.50}})
    assert apart.variant == "a" and apart.rejected["b"].startswith(f"{SLOWER} a")


def test_measurements_without_rounds_get_the_assumed_margin() -> None:
    old = [ev("a", 1.0, zstd=900, rounds=()), ev("b", 1.12, zstd=100, rounds=())]
    assert pick(old).variant == "b"  # 12% apart with no measured spread: not separable
    assert pick(old, noise_rule=NoiseRule(point_noise=0.02)).variant == "a"
    assert pick([old[0], ev("b", 1.3, zstd=100, rounds=())]).variant == "a"
    # A single round (a build with --runs below 6) has no spread either.
    single = [ev("a", 1.0, zstd=900, rounds=(1.0,)), ev("b", 1.12, zstd=100, rounds=(1.12,))]
    assert pick(single).variant == "b"


def test_selection_to_dict_is_json() -> None:
    sel = pick([ev("a", 1.0, zstd=900), ev("b", 1.01, zstd=100)])
    data = json.loads(json.dumps(sel.to_dict()))
    assert data["variant"] == "b" and data["too_close"] == ["a"]
    assert data["latency_interval_ms"] == list(sel.latency_interval_ms or ())


def test_beats_needs_intervals_apart() -> None:
    a = LatencyEstimate(1.0, 0.9, 1.1)
    assert not a.beats(LatencyEstimate(1.2, 1.05, 1.3))  # overlap
    assert a.beats(LatencyEstimate(1.2, 1.15, 1.3))
    assert not a.beats(a)


def test_ties_on_size_fall_to_accuracy_then_name() -> None:
    sel = pick([ev("b", 1.0, drop=0.2), ev("a", 1.0, drop=0.2), ev("c", 1.0, drop=0.1)])
    assert sel.variant == "c" and sel.too_close == ("a", "b")
    assert "larger accuracy drop" in sel.rejected["a"]
    assert pick([ev("b", 1.0), ev("a", 1.0)]).variant == "a"


def test_reason_prefixes_are_shared_with_views_and_cli() -> None:
    from controller.cli.models import TOO_CLOSE as CLI_TOO_CLOSE
    from controller.services.model_views import candidates_of

    assert CLI_TOO_CLOSE == TOO_CLOSE
    sel = pick(
        [ev("a", 1.0, zstd=900), ev("b", 1.01, zstd=100), ev("c", 2.0), ev("d", 0.5, drop=9)]
    )
    assert candidates_of(sel) == ["b", "a", "c"]


def test_runtime_not_on_profile() -> None:
    ort_only = replace(CPU, runtimes=("onnxruntime",))
    sel = pick([ev("lite", 0.5, runtime="litert"), ev("ort", 1.0)], ort_only)
    assert sel.variant == "ort"
    assert "runtime litert not on this profile" in sel.rejected["lite"]


def test_integer_only_profile_needs_full_int8() -> None:
    npu = next(p for p in BUILTIN_PROFILES if p.integer_only)
    sel = pick(
        [
            ev("qdq", 0.5, runtime="litert", precision="int8"),
            ev("full", 1.0, runtime="litert", precision="int8", full_integer=True),
            ev("ort", 0.1),
        ],
        npu,
    )
    assert sel.variant == "full"
    assert "integer-only" in sel.rejected["qdq"]
    assert "runtime onnxruntime" in sel.rejected["ort"]


def test_unsupported_precision_and_reduce_range() -> None:
    a72 = replace(CPU, precisions=("fp32", "int8"), int8_reduce_range=True)
    sel = pick(
        [
            ev("half", 0.5, precision="fp16"),
            ev("i8", 0.6, precision="int8"),
            ev("mixed", 0.7, precision="mixed"),
            ev("i8-rr", 0.8, precision="int8", reduce_range=True),
            ev("lite-i8", 0.9, runtime="litert", precision="int8"),
        ],
        a72,
    )
    assert "precision fp16 not supported" in sel.rejected["half"]
    assert "reduce_range" in sel.rejected["i8"] and "reduce_range" in sel.rejected["mixed"]
    assert sel.variant == "i8-rr"
    assert "slower than" in sel.rejected["lite-i8"]  # LiteRT int8 is not subject to the rule
    no_int8 = replace(CPU, precisions=("fp32",))
    assert (
        "lacks int8" in pick([ev("m", 0.5, precision="mixed"), ev("f", 1.0)], no_int8).rejected["m"]
    )


def test_size_and_memory_budgets() -> None:
    small = replace(CPU, model_size_budget_bytes=2 * MB, memory_budget_bytes=200 * MB)
    sel = pick(
        [ev("huge", 0.5, size=3 * MB), ev("hungry", 0.6, memory=300 * MB), ev("fits", 1.0)], small
    )
    assert sel.variant == "fits"
    assert "file size" in sel.rejected["huge"] and "over the budget" in sel.rejected["huge"]
    assert "estimated memory" in sel.rejected["hungry"]


def test_accuracy_budget_default_and_override() -> None:
    evaluations = [ev("lossy", 0.5, drop=1.5), ev("exact", 1.0, drop=0.0)]
    sel = pick(evaluations)
    assert sel.variant == "exact"
    assert "accuracy drop 1.50 pp over the budget of 1.0 pp" in sel.rejected["lossy"]
    assert pick(evaluations, accuracy_budget_pp=2.0).variant == "lossy"
    assert pick(evaluations, replace(CPU, accuracy_budget_pp=2.0)).variant == "lossy"


def test_ratio_to_side_by_side_baseline_beats_raw_noisy_ms() -> None:
    # "a" ran while the machine was busy (baseline 2 ms): 1.5 ms absolute but 0.75x fp32.
    sel = pick([ev("a", 1.5, baseline=2.0), ev("b", 1.0, baseline=1.0)])
    assert sel.variant == "a"
    assert sel.latency_ms is not None and sel.latency_ms < 1.5


def test_device_measurements_replace_host_estimates() -> None:
    evaluations = [ev("a", 1.0), ev("b", 2.0)]
    sel = pick(evaluations, device_latencies={"cpu": {"b": 0.4}})
    assert sel.variant == "b" and sel.latency_source == DEVICE and sel.latency_ms == 0.4
    other = pick(evaluations, device_latencies={"elsewhere": {"b": 0.4}})
    assert other.variant == "a"


def test_nothing_fits_gives_none_with_every_reason() -> None:
    sel = pick(
        [ev("lossy", 0.5, drop=5.0), ev("lite", 0.4, runtime="litert")],
        replace(CPU, runtimes=("onnxruntime",)),
    )
    assert sel.variant is None and sel.latency_ms is None
    assert set(sel.rejected) == {"lossy", "lite"}
    assert sel.to_dict()["variant"] is None


def test_profile_threads_pick_the_matching_measurement() -> None:
    two = ev("t", 1.0)
    two = replace(
        two,
        latency={
            1: Latency(1, 4.0, 4.0, 4.0, 4.0, spread(0.99, 1.0, 1.01)),
            2: Latency(2, 1.0, 1.0, 2.0, 2.0, spread(0.495, 0.5, 0.505)),
        },
    )
    one = ev("o", 2.4, baseline=3.0)  # measured at 1 thread only: 0.8x
    assert pick([two, one], replace(CPU, threads=4)).variant == "t"  # 0.5x at 2 threads
    assert pick([two, one], replace(CPU, threads=1)).variant == "o"  # 1.0x vs 0.8x
