"""Per-profile selection rules, on synthetic evaluations (pure)."""

from __future__ import annotations

from dataclasses import replace

from controller.build.evaluate import Evaluation, Latency
from controller.build.select import DEVICE, HOST_ESTIMATE, select_variants
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
) -> Evaluation:
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
        latency={1: Latency(1, ms, ms * 1.1, baseline, baseline * 1.1)},
        full_integer=full_integer,
        reduce_range=reduce_range,
    )


def pick(evaluations: list[Evaluation], profile: HardwareProfile = CPU, **kw: object):
    return select_variants(evaluations, [profile], **kw)[profile.name]  # type: ignore[arg-type]


def test_fastest_wins_and_slower_ones_say_why() -> None:
    sel = pick([ev("a", 2.0), ev("b", 1.0), ev("c", 3.0)])
    assert sel.variant == "b" and sel.latency_source == HOST_ESTIMATE
    assert sel.latency_ms == 1.0
    assert sel.rejected["a"].startswith("slower than b")
    assert set(sel.rejected) == {"a", "c"}


def test_ties_within_3_percent_go_to_smaller_compressed_size() -> None:
    sel = pick(
        [
            ev("fast-big", 1.00, zstd=900),
            ev("close-small", 1.02, zstd=300),
            ev("slow-tiny", 1.10, zstd=100),
        ]
    )
    assert sel.variant == "close-small"
    assert "larger compressed" in sel.rejected["fast-big"]
    assert "slower than" in sel.rejected["slow-tiny"]


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
        two, latency={1: Latency(1, 4.0, 4.0, 4.0, 4.0), 2: Latency(2, 1.0, 1.0, 2.0, 2.0)}
    )
    one = ev("o", 2.7, baseline=3.0)  # measured at 1 thread only: 0.9x
    assert pick([two, one], replace(CPU, threads=4)).variant == "t"  # 0.5x at 2 threads
    assert pick([two, one], replace(CPU, threads=1)).variant == "o"  # 1.0x vs 0.9x
