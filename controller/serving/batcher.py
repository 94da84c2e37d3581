"""Dynamic batching: a bounded queue drained by one worker into batched model calls."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from controller.serving.errors import Overloaded
from controller.serving.service_time import ServiceTime

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class DynamicBatcher(Generic[T, R]):
    """`submit(item)` returns a Future; the worker runs `run_batch(items) -> results` on up to
    `max_batch_size` items, waiting at most `max_queue_delay_ms` after the first one for more.
    A full queue raises Overloaded at once (never blocks the caller). `workers` threads drain
    the queue, each forming its own batches (for backends that run batches in parallel).
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        max_batch_size: int = 16,
        max_queue_delay_ms: float = 2.0,
        max_queue_size: int = 256,
        workers: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or workers < 1:
            raise ValueError("max_batch_size, max_queue_size and workers must be >= 1")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self._queue: queue.Queue[tuple[T, Future[R]] | None] = queue.Queue(max_queue_size)
        self._closed = threading.Event()
        self.batches = 0
        self.items = 0
        self.batch_time = ServiceTime(0.0)  # seconds a run_batch call takes, measured
        self._stats_lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._loop, name=f"dynamic-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, item: T) -> Future[R]:
        if self._closed.is_set():
            raise Overloaded("the batcher is closed")
        future: Future[R] = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise Overloaded(f"batch queue is full ({self._queue.maxsize})") from None
        return future

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def expected_s(self) -> float:
        """Seconds until a frame submitted now would have its answer, at worst: the batch
        running now, then one batch per ``max_batch_size`` frames queued, then its own."""
        return (self.queue_depth() // self.max_batch_size + 2) * self.batch_time.seconds

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking work; queued items are still answered."""
        self._closed.set()
        for _ in self._workers:  # one stop marker per worker
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                log.warning("batcher queue stayed full while closing")
        for worker in self._workers:
            worker.join(timeout_s)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            deadline = time.monotonic() + self.max_queue_delay_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    # past the delay, still take whatever is already queued
                    entry = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if entry is None:
                    stop = True
                    break
                batch.append(entry)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        with self._stats_lock:
            self.batches += 1
            self.items += len(live)
        try:
            started = time.perf_counter()
            results = self._run_batch([item for item, _ in live])
            self.batch_time.record(time.perf_counter() - started)
            if len(results) != len(live):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(live)}")
        except Exception as exc:
            log.exception("batch of %d failed", len(live))
            for _, f in live:
                f.set_exception(exc)
            return
        for (_, f), result in zip(live, results, strict=True):
            f.set_result(result)
