"""DeviceWindows (the /metrics per-device window): its running sums, added on arrival and
subtracted as reports leave the window, equal sums made afresh from the reports in it."""

from __future__ import annotations

import random
from dataclasses import fields

from controller.http.windows import DeviceWindows
from controller.services.telemetry_math import INF, ReportSample, Totals, percentile

COUNTS = ("frames", "offloaded", "audited", "offload_pairs", "offload_agreed", "audit_pairs")


def _sample(rng: random.Random, device: str, seq: int, end_ms: int) -> ReportSample:
    low = rng.choice([0.5, 1.0, 2.0, 5.0])
    return ReportSample(
        device_id=device, start_ms=end_ms - 10_000, end_ms=end_ms, model="m",
        variant_id=rng.choice(["m:1/a", "m:1/b"]), sequence=seq,
        counts={n: rng.randrange(0, 50) for n in COUNTS},
        latency={low: 0, low * 2: rng.randrange(1, 9), INF: rng.randrange(0, 2)},
        local_latency={low: rng.randrange(1, 5)},
        confidence={0.5: 0, 0.9: rng.randrange(0, 30), INF: rng.randrange(1, 30)},
        errors={"decode": rng.randrange(0, 2)} if rng.random() < 0.3 else {},
    )  # fmt: skip


def _as_dicts(t: Totals) -> dict[str, object]:
    return {f.name: (dict(v) if isinstance(v := getattr(t, f.name), dict) else v)
            for f in fields(Totals)}  # fmt: skip


def test_running_sums_equal_fresh_sums_over_the_window() -> None:
    rng = random.Random(7)
    now = [1_000_000.0]
    windows = DeviceWindows(window_s=60.0, max_reports=8, clock=lambda: now[0])
    sent: dict[str, list[ReportSample]] = {"d1": [], "d2": []}
    for step in range(200):
        now[0] += rng.uniform(1.0, 6.0)
        device = rng.choice(["d1", "d2"])
        sample = _sample(rng, device, step, int(now[0] * 1000))
        windows.add(sample)
        sent[device].append(sample)
        if step % 7:
            continue
        got = windows.totals()
        since = int(now[0] * 1000) - 60_000
        for device_id, samples in sent.items():
            kept = [s for s in samples[-8:] if s.end_ms > since]  # the bound, then the window
            expected: dict[str, Totals] = {}
            for s in kept:
                expected.setdefault(s.variant_id, Totals()).add_sample(s)
            assert {v: _as_dicts(t) for v, t in got.get(device_id, {}).items()} == {
                v: _as_dicts(t) for v, t in expected.items()
            }
            for variant, t in expected.items():  # zero-count lower bounds kept exactly
                assert percentile(got[device_id][variant].latency, 0.5) == percentile(
                    t.latency, 0.5
                )


def test_devices_beyond_the_bound_are_counted_not_kept() -> None:
    windows = DeviceWindows(window_s=60.0, max_devices=2, clock=lambda: 100.0)
    rng = random.Random(1)
    for i, device in enumerate(["a", "b", "c", "c"]):
        windows.add(_sample(rng, device, i, 99_000))
    assert set(windows.totals()) == {"a", "b"} and windows.not_kept == 2
