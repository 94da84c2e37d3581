"""Admission on a model called in its callers' threads: frames run at most ``parallel`` at a
time, in arrival order, and a frame is let in only when it can finish within its deadline.

The per-frame service time is measured (an exponentially weighted mean of the model calls'
durations, seeded by the serving plan's batch-1 figure). A frame arriving behind ``ahead``
others expects to wait ``ahead / parallel`` service times and then take one: when that is past
its remaining time it is refused at once (Overloaded, RESOURCE_EXHAUSTED), which costs the
server nothing more; when it was admitted but got no slot in time, or its call ended past
its deadline, it is answered AnswerTimeout (DEADLINE_EXCEEDED). Never a late answer, never
a silent one. ``max_waiting`` bounds the frames waiting whatever their deadlines.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from controller.serving.errors import AnswerTimeout, Overloaded

R = TypeVar("R")
EWMA_WEIGHT = 0.1  # of the newest call in the service-time mean


class ServiceTime:
    """The measured seconds one model call takes (a float store is atomic under the GIL)."""

    def __init__(self, initial_s: float) -> None:
        self.seconds = max(initial_s, 0.0)

    def record(self, seconds: float) -> None:
        self.seconds += EWMA_WEIGHT * (seconds - self.seconds)


class Admission:
    def __init__(
        self,
        what: str,
        parallel: int = 1,
        max_waiting: int = 256,
        service: ServiceTime | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if parallel < 1 or max_waiting < 0:
            raise ValueError("parallel must be >= 1 and max_waiting >= 0")
        self.what = what
        self.parallel = parallel
        self.max_waiting = max_waiting
        self.service = service or ServiceTime(0.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: deque[threading.Event] = deque()
        self.refused = 0  # at the door: could not finish in time, or too many waiting
        self.expired = 0  # admitted, but no slot or no answer within the deadline

    def expected_s(self, ahead: int) -> float:
        """Seconds until a frame behind ``ahead`` others (running or waiting) would have its
        answer, at worst: the running ones just started."""
        return (ahead // self.parallel + 1) * self.service.seconds

    def run(self, call: Callable[[], R], timeout_s: float | None) -> R:
        """``call()`` in a slot, within ``timeout_s`` (None: no deadline)."""
        if timeout_s is not None and timeout_s <= 0:
            self.expired += 1
            raise AnswerTimeout(f"no time left to answer with {self.what}")
        end = None if timeout_s is None else self._clock() + timeout_s
        ticket = self._enter(timeout_s)
        if ticket is not None:
            self._wait_for_slot(ticket, end)
        try:
            t0 = time.perf_counter()
            result = call()
            self.service.record(time.perf_counter() - t0)
        finally:
            self._leave()
        if end is not None and self._clock() > end:
            self.expired += 1
            raise AnswerTimeout(f"{self.what} answered past the frame's {timeout_s:.3f}s deadline")
        return result

    def in_flight(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._lock:
            return self._running, len(self._waiting)

    def _enter(self, timeout_s: float | None) -> threading.Event | None:
        """None: a slot is ours; else the ticket to wait on."""
        with self._lock:
            expected = self.expected_s(self._running + len(self._waiting))
            fits = timeout_s is None or expected <= timeout_s
            if fits and self._running < self.parallel and not self._waiting:
                self._running += 1
                return None
            if len(self._waiting) >= self.max_waiting:
                self.refused += 1
                raise Overloaded(f"{len(self._waiting)} frames wait for {self.what}")
            if timeout_s is not None and expected > timeout_s:
                self.refused += 1
                raise Overloaded(
                    f"{self.what} would answer in {expected * 1000:.0f} ms "
                    f"({len(self._waiting)} frames waiting), past the frame's "
                    f"{timeout_s * 1000:.0f} ms deadline"
                )
            ticket = threading.Event()
            self._waiting.append(ticket)
            return ticket

    def _wait_for_slot(self, ticket: threading.Event, end: float | None) -> None:
        # a frame that starts later than one service time before its deadline ends late
        latest = None if end is None else end - self.service.seconds
        ticket.wait(None if latest is None else max(0.0, latest - self._clock()))
        with self._lock:
            if ticket.is_set():  # granted (perhaps just as the wait ran out)
                if latest is None or self._clock() <= latest:
                    return
                self._release_locked()
            else:
                self._waiting.remove(ticket)
        self.expired += 1
        raise AnswerTimeout(f"no slot on {self.what} in time for the frame's deadline")

    def _leave(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._waiting:  # the slot passes to the oldest waiting frame
            self._waiting.popleft().set()
        else:
            self._running -= 1
