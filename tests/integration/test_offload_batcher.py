"""DynamicBatcher: batch formation, bounded queue, errors, shutdown."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from controller.serving import DynamicBatcher, Overloaded


def test_forms_batches_up_to_max_size_and_answers_in_order() -> None:
    gate = threading.Event()
    sizes: list[int] = []

    def run(items: Sequence[int]) -> list[int]:
        gate.wait(5)
        sizes.append(len(items))
        return [i * 10 for i in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, 4, max_queue_delay_ms=50)
    futures = [batcher.submit(i) for i in range(9)]
    gate.set()
    assert [f.result(5) for f in futures] == [i * 10 for i in range(9)]
    batcher.close()
    assert sum(sizes) == 9 and max(sizes) <= 4 and len(sizes) >= 3
    assert (batcher.batches, batcher.items) == (len(sizes), 9)


def test_full_queue_raises_overloaded_and_errors_reach_every_future() -> None:
    started, release = threading.Event(), threading.Event()

    def run(items: Sequence[int]) -> list[int]:
        started.set()
        release.wait(5)
        raise ValueError("model exploded")

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, 1, 0, max_queue_size=2)
    first = batcher.submit(0)
    assert started.wait(5)
    queued = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(Overloaded):
        batcher.submit(3)
    release.set()
    for f in [first, *queued]:
        with pytest.raises(ValueError, match="exploded"):
            f.result(5)
    batcher.close()
    with pytest.raises(Overloaded):
        batcher.submit(4)


def test_close_answers_queued_items_with_several_workers() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        lambda items: [i + 1 for i in items], 8, max_queue_delay_ms=1, workers=2
    )
    futures = [batcher.submit(i) for i in range(50)]
    batcher.close()
    assert [f.result(5) for f in futures] == list(range(1, 51))
