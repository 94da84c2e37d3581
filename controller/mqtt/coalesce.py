"""One run of an action for however many callers asked within an interval.

Each enrollment or revocation rewrote Mosquitto's password file (every device, O(fleet)) and
signalled the broker. ``CoalescedAction`` is a group commit: a caller finding no run in
progress runs at once; every caller arriving while one runs shares the next run, which starts
when that one ends (and, with ``interval_s`` > 0, no sooner than that after it). So a burst of
N enrollments costs a few rewrites, and one enrollment at a time waits for nothing extra. A
caller waits (at most ``wait_s``) until a run that began after its call has finished, so an
enrolled device's first MQTT connect still finds its password in the broker's file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class CoalescedAction:
    def __init__(
        self,
        action: Callable[[], None],
        *,
        interval_s: float = 0.0,
        wait_s: float = 10.0,
        name: str = "coalesced-action",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action = action
        self._interval_s = interval_s
        self._wait_s = wait_s
        self._name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._requested = 0  # calls so far
        self._done = 0  # calls a finished run covered
        self._running = False
        self._last_run = float("-inf")
        self.runs = 0

    def __call__(self) -> None:
        """Ask for a run; return once one that started after this call has finished (or
        ``wait_s`` passed: logged, the run still happens)."""
        with self._cond:
            self._requested += 1
            mine = self._requested
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
            if not self._cond.wait_for(lambda: self._done >= mine, timeout=self._wait_s):
                log.warning("%s still pending after %.1f s", self._name, self._wait_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._done >= self._requested:
                    self._running = False
                    return
                delay = self._last_run + self._interval_s - self._clock()
            if delay > 0:
                time.sleep(delay)  # callers arriving meanwhile join this run
            with self._cond:
                covered = self._requested
            try:
                self._action()
            except Exception:  # the callers are not told; the next call tries again
                log.exception("%s failed", self._name)
            with self._cond:
                self._done = covered
                self._last_run = self._clock()
                self.runs += 1
                self._cond.notify_all()
