"""The batch size a model is served at, learnt online from its live calls.

The serving plan's measurement (controller.serving.plan) picks the starting cap in about a
second and a half, on a host that may be busy; it can be wrong. Every live call then teaches
the per-frame time of its batch size (by power-of-two bucket, a weighted mean): the cap is
the bucket whose per-frame time beats every smaller one's by ``MIN_GAIN``. Batches above the
cap are tried now and then (``EXPLORE_EVERY`` calls, when enough frames wait to fill one),
so a cap set too low can grow; one set too high shrinks as its calls show no gain. A call is
also kept within a share of the frames' deadline (``within``): on a loaded host a full batch
can take longer than the frames behind it may wait. Pure: no clock, no threads (the Combiner
calls it under its lock).
"""

from __future__ import annotations

MIN_GAIN = 1.1  # a larger batch must be this much cheaper per frame to be the cap
EXPLORE_EVERY = 16  # calls between tries of twice the cap
WEIGHT = 0.1  # of the newest call in a bucket's mean


def bucket(size: int) -> int:
    """The largest power of two <= size."""
    return 1 << (max(1, size).bit_length() - 1)


class BatchCap:
    def __init__(self, start: int, most: int) -> None:
        if most < 1:
            raise ValueError("most must be >= 1")
        self.most = most
        self.cap = max(1, min(start, most))
        self.per_frame_s: dict[int, float] = {}
        self.calls = 0

    def limit(self, waiting: int, call_budget_s: float | None = None) -> int:
        """The size of the next call, with ``waiting`` frames behind its leader: the cap (or
        twice it, now and then), halved while its measured call time would exceed
        ``call_budget_s`` (a share of the frames' deadlines: on a loaded host a full batch can
        take longer than the frames behind it may wait)."""
        self.calls += 1
        size = self.cap
        if self.cap < self.most and waiting >= self.cap and self.calls % EXPLORE_EVERY == 0:
            size = min(self.most, 2 * self.cap)
        return self.within(size, call_budget_s)

    def within(self, size: int, call_budget_s: float | None) -> int:
        """``size`` halved while a call of it would take longer than ``call_budget_s``."""
        if call_budget_s is None or not self.per_frame_s:
            return size
        while size > 1 and size * self._per_frame_near(size) > call_budget_s:
            size //= 2
        return size

    def _per_frame_near(self, size: int) -> float:
        """The per-frame time of ``size``'s bucket, else of the nearest bucket measured."""
        b = bucket(size)
        return (
            self.per_frame_s.get(b)
            or self.per_frame_s[
                min(self.per_frame_s, key=lambda k: abs(k.bit_length() - b.bit_length()))
            ]
        )

    def record(self, size: int, seconds: float) -> int:
        """A call of ``size`` frames took ``seconds``: the cap from now on."""
        b = bucket(size)
        per_frame = seconds / max(1, size)
        old = self.per_frame_s.get(b)
        self.per_frame_s[b] = per_frame if old is None else old + WEIGHT * (per_frame - old)
        if len(self.per_frame_s) >= 2:
            self.cap = min(self._best(), self.most)
        return self.cap

    def _best(self) -> int:
        best = min(self.per_frame_s)
        for b in sorted(self.per_frame_s):
            if self.per_frame_s[b] * MIN_GAIN <= self.per_frame_s[best]:
                best = b
        return best
