"""Timing a cloud model per batch size, within a time budget (the shell of plan.choose_plan).

Sizes are timed interleaved, in rounds (each round in a rotated order), so slow drift of a
busy machine falls on every size alike; each round gives one per-frame ratio to batch 1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.serving.plan import BATCH_SIZES, BatchMeasurement

DEFAULT_BUDGET_S = 2.5
DEFAULT_ROUNDS = 5


@dataclass(frozen=True)
class BatchTimings:
    measurements: tuple[BatchMeasurement, ...]
    not_measured: str = ""  # why larger sizes are missing ("" = all measured)
    elapsed_s: float = 0.0


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def measure_batches(
    run: Callable[[int], object],
    sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = DEFAULT_BUDGET_S,
    rounds: int = DEFAULT_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchTimings:
    """Time ``run(batch_size)`` for each size (1 first and always). The list ends at a size
    whose warm-up call fails, or that would make one call of each size exceed a round's share
    of the budget. Takes about ``budget_s`` (more only when batch 1 alone is that slow)."""
    start = clock()
    sizes = sorted({1, *sizes})
    share = budget_s / max(1, rounds)
    kept: list[int] = []
    not_measured = ""
    round_cost = last_took = 0.0  # round_cost: one call of each kept size, the least a round takes
    for size in sizes:
        if kept:
            expected = last_took * size / kept[-1]  # per-frame cost at most flat
            if round_cost + expected > share:
                not_measured = (
                    f"batch {size} and larger not measured: about {expected * 1000:.0f} ms a "
                    f"call, over the {share * 1000:.0f} ms a round of measuring may take"
                )
                break
        t0 = clock()
        try:
            run(size)  # warm-up: the first call at a new shape allocates
        except Exception as exc:
            if size == 1:
                raise
            not_measured = f"batch {size} and larger not measured: {exc}"
            break
        last_took = clock() - t0
        round_cost += last_took
        kept.append(size)
    spent = clock() - start
    slot = max(0.0, budget_s - spent) / (max(1, rounds) * len(kept))
    runs: dict[int, list[float]] = {s: [] for s in kept}
    round_medians: list[dict[int, float]] = []
    for r in range(max(1, rounds)):
        order = kept[r % len(kept) :] + kept[: r % len(kept)]
        medians: dict[int, float] = {}
        for size in order:
            times: list[float] = []
            slot_end = clock() + slot
            while not times or clock() < slot_end:
                t0 = clock()
                run(size)
                times.append(clock() - t0)
            runs[size].extend(times)
            medians[size] = statistics.median(times)
        round_medians.append(medians)
    measurements = []
    for size in kept:
        ratios = tuple((m[size] / size) / m[1] for m in round_medians if m[1] > 0 and m[size] > 0)
        measurements.append(
            BatchMeasurement(
                batch_size=size,
                median_ms=statistics.median(runs[size]) * 1000.0,
                p95_ms=_p95(runs[size]) * 1000.0,
                round_ratios=ratios,
            )
        )
    return BatchTimings(tuple(measurements), not_measured, clock() - start)
