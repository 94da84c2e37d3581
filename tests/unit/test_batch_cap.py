"""The online batch-size cap (controller.serving.batch_cap): pure, fed by made-up call times."""

from __future__ import annotations

import numpy as np

from controller.serving.batch_cap import EXPLORE_EVERY, BatchCap, bucket


def calls(cap: BatchCap, size: int, per_frame_s: float, n: int = 30) -> int:
    for _ in range(n):
        cap.record(size, size * per_frame_s)
    return cap.cap


def test_buckets_are_powers_of_two() -> None:
    assert [bucket(n) for n in (1, 2, 3, 4, 7, 8, 31, 32)] == [1, 2, 2, 4, 4, 8, 16, 32]


def test_a_cap_started_too_low_grows_when_larger_batches_pay() -> None:
    cap = BatchCap(start=1, most=32)
    calls(cap, 1, 2.0e-3)
    assert cap.cap == 1
    # it tries twice the cap only every EXPLORE_EVERY calls, and only when frames wait to fill it
    limits = [cap.limit(waiting=8) for _ in range(2 * EXPLORE_EVERY)]
    assert limits.count(2) == 2 and set(limits) == {1, 2}
    assert [cap.limit(waiting=0) for _ in range(EXPLORE_EVERY)].count(2) == 0
    assert calls(cap, 2, 1.2e-3) == 2  # 0.6x per frame: it pays
    assert calls(cap, 4, 0.8e-3) == 4
    assert calls(cap, 8, 0.78e-3) == 4  # within MIN_GAIN of 4: no better


def test_a_cap_started_too_high_shrinks_when_its_batches_gain_nothing() -> None:
    cap = BatchCap(start=16, most=16)
    calls(cap, 16, 1.5e-3, n=5)
    assert cap.cap == 16  # one bucket alone says nothing
    assert calls(cap, 1, 1.45e-3, n=5) == 1  # batch 1 as cheap per frame: direct calls


def test_the_cap_never_exceeds_the_most_measured() -> None:
    cap = BatchCap(start=64, most=8)
    assert cap.cap == 8
    assert [cap.limit(waiting=100) for _ in range(3 * EXPLORE_EVERY)].count(16) == 0


def test_a_combiner_started_at_batch_one_learns_to_batch_under_load() -> None:
    """8 callers on one slot of a model whose call costs 2 ms + 0.1 ms a frame: the cap, started
    at 1 (a plan measured on a busy host), grows from the live calls."""
    import threading
    import time

    from controller.serving.combining import Combiner

    def run_batch(tensors: object) -> list[int]:
        size = len(tensors)  # type: ignore[arg-type]
        time.sleep(0.002 + 0.0001 * size)
        return list(range(size))

    combiner = Combiner(run_batch, "fake", max_batch_size=8, parallel=1, max_waiting=64,
                        start_batch_size=1)  # fmt: skip
    give_up = time.monotonic() + 8.0  # a loaded host; about 0.5 s on a quiet one
    grown = threading.Event()

    def caller() -> None:
        while time.monotonic() < give_up and not grown.is_set():
            combiner.run(np.zeros(1), timeout_s=5.0)
            if combiner.batch_cap.cap == 8:
                grown.set()

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert combiner.batch_cap.cap == 8
    assert combiner.items / combiner.batches > 1.5  # the calls carried several frames


def test_a_call_is_kept_within_its_share_of_the_deadline() -> None:
    cap = BatchCap(start=32, most=32)
    calls(cap, 1, 6.0e-3, n=3)
    calls(cap, 32, 3.0e-3, n=3)  # 0.5x per frame: the cap is 32, a call takes 96 ms
    assert cap.cap == 32
    assert cap.limit(waiting=40, call_budget_s=None) == 32
    assert cap.limit(waiting=40, call_budget_s=0.0625) == 16  # 16 x 3 ms (32's, the nearest)
    assert cap.within(32, 0.005) == 1  # a call of one: however slow, it is the least there is
