"""/metrics and dashboard response times with a simulated fleet.

One controller (build_controller, SQLite, ports 0) is seeded through the real registry and
telemetry path (tests/http_seed.py) first with a small fleet, timed, then grown to the large
one and timed again, so the two sizes are measured side by side in one run. Each figure is
the p50/p95 of sequential requests over loopback with a logged-in session, as a browser or
Prometheus would make them: /metrics, the overview (its default 60 s window) and the device
page of a device with an hour of reports (its default 1 h window).

    .venv/bin/python bench/bench_http.py [--devices 1000] [--reports 6] [--requests 30]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.app import Controller
from tests.fleet import start_controller
from tests.http_seed import REPORT_MS, report, seed_fleet

SMALL = 10
HOUR_REPORTS = 354  # with the 6 seeded: an hour of 10 s reports


def _timed(session: requests.Session, url: str, n: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        answer = session.get(url, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        size = len(answer.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, size


def _login(base: str, token: str) -> requests.Session:
    session = requests.Session()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{base}/login").text)
    assert csrf is not None
    session.post(f"{base}/login", data={"token": token, "csrf_token": csrf.group(1)}, timeout=10)
    return session


def _measure(base: str, session: requests.Session, device_id: str, n: int) -> dict[str, tuple]:
    return {
        "metrics": _timed(session, f"{base}/metrics", n),
        "overview": _timed(session, f"{base}/", n),  # its default window: 60 s
        "device": _timed(session, f"{base}/devices/{device_id}?window=1h", n),
    }


def _hour_of(controller: Controller, device_id: str, now_ms: int) -> None:
    """The hour before the seeded reports, every 10 s, for the measured device's page."""
    for k in range(HOUR_REPORTS):
        end = now_ms - (k + 6) * REPORT_MS
        controller.device_messages.device_telemetry(device_id, report(device_id, end, 10_000 + k))
    controller.telemetry.flush(timeout=60.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=6, help="10 s reports per device")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Windows of an hour keep the seeded reports (6 per device, 10 s apart, the last one
        # at the start) in the /metrics and alert windows for the whole run: the same work per
        # scrape and per evaluation as a 60 s window over reports that keep arriving.
        controller = start_controller(
            Path(tmp), rollout_tick_s=3600.0, metrics_window_s=3600.0, alert_window_s=3600.0
        )
        try:
            base = controller.http_url
            session = _login(base, controller.operator_token)
            now = int(time.time() * 1000)
            small = seed_fleet(controller, SMALL, args.reports, now, seed=1)
            _hour_of(controller, small.device_ids[0], now)  # the device page shows an hour
            at_small = _measure(base, session, small.device_ids[0], args.requests)
            started = time.perf_counter()
            seed_fleet(controller, args.devices - SMALL, args.reports, now, seed=2, prefix="node")
            seeded_s = time.perf_counter() - started
            at_large = _measure(base, session, small.device_ids[0], args.requests)
            # the same requests with the fleet monitor's evaluation loop stopped: what of the
            # figures above is CPU the monitor takes from them (one process, one GIL)
            controller.monitor.stop()
            quiet = _measure(base, session, small.device_ids[0], args.requests)
        finally:
            controller.stop()
    print(
        f"fleet: {SMALL} then {args.devices} devices, {args.reports} reports each (seeded in "
        f"{seeded_s:.1f} s); {args.requests} sequential requests per figure"
    )
    print(f"{'page':10} {'devices':>8} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>9}")
    for name in ("metrics", "overview", "device"):
        for count, figures in ((SMALL, at_small), (args.devices, at_large)):
            p50, p95, size = figures[name]
            print(f"{name:10} {count:>8} {p50:>8.1f} {p95:>8.1f} {size:>9}")
        p50, p95, size = quiet[name]
        print(f"{name:10} {args.devices:>8} {p50:>8.1f} {p95:>8.1f} {size:>9}  (monitor stopped)")
        ratio = at_large[name][1] / at_small[name][1]
        print(f"{name:10} p95 {args.devices}/{SMALL} devices: {ratio:.1f}x; "
              f"monitor running/stopped: {at_large[name][1] / p95:.1f}x")  # fmt: skip
    goals = [
        ("metrics_p95_ms", at_large["metrics"][1], 500.0),
        ("dashboard_overview_p95_ms", at_large["overview"][1], 500.0),
        ("dashboard_device_p95_ms", at_large["device"][1], 500.0),
    ]
    for name, value, target in goals:
        verdict = "OK" if value <= target else "MISSED"
        print(f"goal {name}: {value:.1f} (target <= {target:.0f}) {verdict}")
    ratio = at_large["overview"][1] / at_small["overview"][1]
    verdict = "OK" if ratio <= 3.0 else "MISSED"
    print(f"goal dashboard_overview_p95_ratio_{args.devices}_vs_{SMALL}: {ratio:.1f} "
          f"(target <= 3.0, paged) {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
