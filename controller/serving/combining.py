"""Batching formed in the gRPC handlers' own threads, only from frames already waiting.

A frame that finds a free slot (at most ``parallel`` model calls at once, by default one per
core) runs at once in its own thread: a direct call, no hand-off. A frame that finds every
slot busy waits; when a call ends, the slot passes to the oldest waiting frame, whose thread
runs it together with the frames queued behind it, up to ``max_batch_size``. So a lone frame
is never delayed by batching, and batches grow only as far as load makes frames wait: the
batch size adapts to the live traffic, with no batcher thread and no queue delay.

Admission, from the measured time of a call against each frame's deadline: a frame that
cannot be answered in time is refused at once (Overloaded, RESOURCE_EXHAUSTED), before it
is preprocessed; one that got no slot in time, or whose call ended past its deadline, is
answered AnswerTimeout (DEADLINE_EXCEEDED). Never a late answer, never a silent one.
``max_batch_size`` 1 is the direct path (DirectModel).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from controller.serving.batch_cap import BatchCap
from controller.serving.cloud_model import CloudModel, Prediction, usable_cores
from controller.serving.errors import AnswerTimeout, Overloaded
from controller.serving.service_time import ServiceTime

log = logging.getLogger(__name__)
WAITING, LEADING, TAKEN, DONE, GONE = range(5)
# A call may take at most this share of the frames' deadline: a frame then waits for at most one
# call and takes one. On a host at load 40, batches of 32 took ~230 ms and admission refused most
# frames of a 250 ms deadline (bench_offload: 67 frames/s against 279 unbatched). Simulated
# (32 callers, 187 ms, calls of 10 ms + 6 ms a frame): no share 266/s with 213 refused or late;
# 0.25: 235/s; 0.4: 275/s, none refused or late.
DEADLINE_SHARE = 0.4


@dataclass(eq=False)
class _Entry:
    tensor: np.ndarray
    latest_start: float  # monotonic: started later, its answer would come past the deadline
    state: int = WAITING
    wake: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class Combiner:
    """``run_batch(tensors) -> results`` called in the callers' threads, batched as above.
    ``batches``/``items`` count the calls and the frames they carried."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[np.ndarray]], Sequence[object]],
        what: str,
        max_batch_size: int,
        parallel: int,
        max_waiting: int,
        call_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        start_batch_size: int | None = None,
    ) -> None:
        if max_batch_size < 1 or parallel < 1 or max_waiting < 0:
            raise ValueError("max_batch_size and parallel must be >= 1, max_waiting >= 0")
        self._run_batch = run_batch
        self.what = what
        self.max_batch_size = max_batch_size
        # the size batches are capped at, learnt from the live calls (batch_cap)
        self.batch_cap = BatchCap(start_batch_size or max_batch_size, max_batch_size)
        self.parallel = parallel
        self.max_waiting = max_waiting
        self.call_time = ServiceTime(call_s)  # seconds a model call takes, measured
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: deque[_Entry] = deque()
        self._timeouts_s = 0.0  # the frames' deadlines (0: none seen), for the batch budget
        self.batches = self.items = self.refused = self.expired = 0

    def expected_s(self, running: int, waiting: int) -> float:
        """Seconds until a frame arriving now would have its answer, at worst: every running
        call just started, the waiting frames go the current cap a call, then its own."""
        busy = 1 if running >= self.parallel else 0
        size = self.batch_cap.within(self.batch_cap.cap, self._call_budget_s())
        ahead = waiting // (size * self.parallel)
        return (busy + ahead + 1) * self.call_time.seconds

    def _call_budget_s(self) -> float | None:
        return DEADLINE_SHARE * self._timeouts_s if self._timeouts_s else None

    def refuse_if_late(self, timeout_s: float | None) -> None:
        """Overloaded when a frame arriving now could not be answered within ``timeout_s``."""
        with self._lock:
            self._refuse_if_late_locked(timeout_s)

    def _refuse_if_late_locked(self, timeout_s: float | None) -> None:
        if timeout_s is None:
            return
        expected = self.expected_s(self._running, len(self._waiting))
        if expected > timeout_s:
            self.refused += 1
            raise Overloaded(
                f"{self.what} would answer in {expected * 1000:.0f} ms "
                f"({len(self._waiting)} frames waiting), past the frame's "
                f"{timeout_s * 1000:.0f} ms deadline"
            )

    def in_flight(self) -> tuple[int, int]:
        with self._lock:
            return self._running, len(self._waiting)

    def run(self, tensor: np.ndarray, timeout_s: float | None) -> object:
        now = self._clock()
        if timeout_s is not None and timeout_s <= 0:
            self._expire(f"no time left to answer with {self.what}")
        end = None if timeout_s is None else now + timeout_s
        latest = np.inf if end is None else end - self.call_time.seconds
        entry = _Entry(tensor, float(latest))
        with self._lock:
            if timeout_s is not None:  # the frames' deadlines, a weighted mean
                seen = self._timeouts_s or timeout_s
                self._timeouts_s = seen + 0.05 * (timeout_s - seen)
            self._refuse_if_late_locked(timeout_s)
            if self._running < self.parallel and not self._waiting:
                self._running += 1
                entry.state = LEADING
            elif len(self._waiting) >= self.max_waiting:
                self.refused += 1
                raise Overloaded(f"{len(self._waiting)} frames wait for {self.what}")
            else:
                self._waiting.append(entry)
        if entry.state != LEADING:
            self._wait(entry, end)
            if entry.state == DONE:
                return self._answer(entry, end)
        self._lead(entry)
        return self._answer(entry, end)

    def _wait(self, entry: _Entry, end: float | None) -> None:
        """Until ``entry`` leads (it got the slot), is answered by a leader, or runs out."""
        wait_s = None if end is None else max(0.0, end - self._clock())
        entry.wake.wait(wait_s)
        with self._lock:
            if entry.state in (LEADING, DONE):
                if entry.state == DONE or self._clock() <= entry.latest_start:
                    return
                self._pass_slot_locked()  # promoted too late to run in time
            elif entry.state == WAITING:
                self._waiting.remove(entry)
            entry.state = GONE  # TAKEN: its batch answers nobody
        self._expire(f"no answer from {self.what} in time for the frame's deadline")

    def _lead(self, leader: _Entry) -> None:
        """Run ``leader`` with the frames waiting behind it, then pass the slot on."""
        batch = [leader]
        now = self._clock()
        with self._lock:
            limit = self.batch_cap.limit(len(self._waiting), self._call_budget_s())
            while self._waiting and len(batch) < limit:
                entry = self._waiting.popleft()
                if entry.latest_start < now:  # would be answered late: let it expire now
                    entry.state = GONE
                    entry.wake.set()
                    continue
                entry.state = TAKEN
                batch.append(entry)
        try:
            started = time.perf_counter()
            results = self._run_batch([e.tensor for e in batch])
            took = time.perf_counter() - started
            self.call_time.record(took)
            with self._lock:
                before, after = self.batch_cap.cap, self.batch_cap.record(len(batch), took)
            if after != before:
                log.info(
                    "%s: batches capped at %d now (was %d), per-frame ms by size %s",
                    self.what, after, before,
                    {b: round(t * 1000, 3) for b, t in sorted(self.batch_cap.per_frame_s.items())},
                )  # fmt: skip
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)}")
        except Exception as exc:
            for e in batch:
                e.error = exc
        else:
            for e, result in zip(batch, results, strict=True):
                e.result = result
        with self._lock:
            self.batches += 1
            self.items += len(batch)
            for e in batch:
                if e.state != GONE:
                    e.state = DONE
                e.wake.set()
            self._pass_slot_locked()

    def _pass_slot_locked(self) -> None:
        if self._waiting:  # the oldest waiting frame leads the next call
            entry = self._waiting.popleft()
            entry.state = LEADING
            entry.wake.set()
        else:
            self._running -= 1

    def _answer(self, entry: _Entry, end: float | None) -> object:
        if entry.error is not None:
            raise entry.error
        if end is not None and self._clock() > end:
            self._expire(f"{self.what} answered past the frame's deadline")
        return entry.result

    def _expire(self, message: str) -> None:
        with self._lock:
            self.expired += 1
        raise AnswerTimeout(message)


class CombinedModel:
    """A CloudModel served through a Combiner: preprocessing in the caller's thread, before
    it waits; batches of at most ``max_batch_size``, capped from ``start_batch_size`` (the
    plan's) at the size the live calls show pays (controller.serving.batch_cap)."""

    def __init__(
        self,
        model: CloudModel,
        max_batch_size: int,
        max_in_flight: int = 256,
        parallel: int | None = None,
        call_s: float = 0.0,
        start_batch_size: int | None = None,
    ) -> None:
        self.model = model
        self.model_id = model.model_id
        slots = min(max_in_flight, parallel or usable_cores())
        self.combiner = Combiner(
            model.run_batch, model.model_id, max_batch_size, slots, max_in_flight - slots,
            call_s, start_batch_size=start_batch_size,
        )  # fmt: skip

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    def predict(self, frame: np.ndarray, timeout_s: float | None = None) -> Prediction:
        start = time.perf_counter()
        combiner = self.combiner
        combiner.refuse_if_late(timeout_s)  # before preprocessing: a refusal costs nothing
        tensor = self.model.preprocess(frame)
        left = None if timeout_s is None else timeout_s - (time.perf_counter() - start)
        submitted = time.perf_counter()
        prediction = combiner.run(tensor, left)
        assert isinstance(prediction, Prediction)
        waited_ms = (time.perf_counter() - submitted) * 1000.0
        return replace(prediction, queue_ms=max(0.0, waited_ms - prediction.infer_ms))

    def close(self) -> None:
        """Nothing queued beyond the callers' own threads."""


class DirectModel(CombinedModel):
    """The plan when batching does not pay: each frame a call of its own in its caller's
    thread, at most ``parallel`` at once, the rest waiting in order (``max_in_flight`` in
    all), with the same admission."""

    def __init__(
        self,
        model: CloudModel,
        max_in_flight: int = 256,
        parallel: int | None = None,
        service_s: float = 0.0,
    ) -> None:
        super().__init__(model, 1, max_in_flight, parallel, service_s)
        self.max_in_flight = max_in_flight
