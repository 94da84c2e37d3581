"""The two measurements plan.choose_plan decides from, each within a time budget.

``measure_batches``: the model alone per batch size, interleaved in rounds (each round in a
rotated order, so the slow drift of a busy machine falls on every size alike); each round
gives one per-frame ratio to batch 1. ``compare_under_load``: concurrent callers, direct
against through the batcher, alternating in rounds.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.serving.plan import BATCH_SIZES, BatchMeasurement, LoadComparison, LoadRound

DEFAULT_BUDGET_S = 1.4  # measurement 1; measurement 2, when run, takes about as long again
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
    of the budget. Takes about ``budget_s``: rounds stop past it once two are done (more
    only when batch 1 alone is that slow)."""
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
        if r >= 1 and clock() - start > budget_s:  # a busier machine than the warm-up showed
            break
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


def closed_loop(call: Callable[[], object], clients: int, duration_s: float) -> tuple[float, float]:
    """``clients`` threads calling ``call`` back to back for ``duration_s``: (frames/s, p95 ms)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + duration_s

    def client(mine: list[float]) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(mine,), daemon=True) for mine in latencies]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + 30.0)
    elapsed = time.perf_counter() - start
    every = [t for mine in latencies for t in mine]
    if not every:
        return 0.0, math.inf
    return len(every) / elapsed, _p95(every) * 1000.0


def compare_under_load(
    direct: Callable[[], object],
    batched: Callable[[], object],
    batch_size: int,
    clients: int = 8,
    rounds: int = 4,
    slot_s: float = 0.2,
) -> LoadComparison:
    """The same ``clients`` concurrent callers on ``direct`` and on ``batched`` (one frame a
    call each), alternating in rounds (which goes first alternates too)."""
    measured = []
    for r in range(rounds):
        first, second = (direct, batched) if r % 2 == 0 else (batched, direct)
        a = closed_loop(first, clients, slot_s)
        b = closed_loop(second, clients, slot_s)
        (d_fps, d_p95), (b_fps, b_p95) = (a, b) if r % 2 == 0 else (b, a)
        measured.append(LoadRound(d_fps, d_p95, b_fps, b_p95))
    return LoadComparison(batch_size, clients, tuple(measured))
