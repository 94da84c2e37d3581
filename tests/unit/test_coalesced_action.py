"""CoalescedAction: a burst of callers shares runs, each returns after a run that began after
its call (what an enrollment reply waits for before the device connects to the broker)."""

from __future__ import annotations

import threading
import time

from controller.mqtt.coalesce import CoalescedAction


def test_a_burst_of_callers_shares_a_few_runs_and_each_sees_its_change() -> None:
    state = {"written": 0}
    changes = {"made": 0}
    lock = threading.Lock()

    def rewrite() -> None:  # the passwd rewrite: reads every change made so far
        with lock:
            state["written"] = changes["made"]
        time.sleep(0.02)

    action = CoalescedAction(rewrite, interval_s=0.2, wait_s=5.0)
    stale: list[int] = []

    def enroll() -> None:
        with lock:
            changes["made"] += 1
            mine = changes["made"]
        action()
        with lock:
            if state["written"] < mine:
                stale.append(mine)

    callers = [threading.Thread(target=enroll) for _ in range(60)]
    started = time.monotonic()
    for t in callers:
        t.start()
    for t in callers:
        t.join(10)
    elapsed = time.monotonic() - started
    assert stale == []  # nobody returned before its change was written
    assert 1 <= action.runs <= 4, action.runs  # 60 changes, not 60 rewrites
    assert elapsed < 2.0


def test_a_lone_call_runs_at_once_and_a_failure_does_not_wedge_it() -> None:
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OSError("disk full")

    action = CoalescedAction(flaky, interval_s=0.05, wait_s=2.0)
    started = time.monotonic()
    action()
    assert calls and calls[0] - started < 0.5  # no interval to wait for the first one
    action()  # the failed run is logged; the next call runs again
    assert len(calls) == 2 and action.runs == 2


def test_group_commit_callers_one_at_a_time_wait_for_nothing_a_burst_shares() -> None:
    def rewrite() -> None:
        time.sleep(0.03)  # a passwd of a few thousand devices

    action = CoalescedAction(rewrite)  # interval 0: the next run starts when one ends
    started = time.monotonic()
    for _ in range(10):  # enrollments one after the other: a run each, no interval between
        action()
    assert action.runs == 10 and time.monotonic() - started < 1.5
    callers = [threading.Thread(target=action) for _ in range(60)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(10)
    assert action.runs - 10 <= 8, action.runs  # 60 at once: a run in progress + a shared next
