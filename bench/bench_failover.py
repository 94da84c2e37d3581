"""Leader failover time: two controller replicas (real `edgefleet controller serve` processes)
on one PostgreSQL and one Mosquitto; the leader is killed with SIGKILL and the time is taken
until the other replica holds the lease and until its rollout engine's first tick (the line
it logs when a term's ticks begin), for several leases side by side.

    .venv/bin/python -m bench.bench_failover [--rounds 3] [--leases 2,5]

Prints per lease the failover times (kill -> lease taken, kill -> first tick saved), their
ratio to the lease, and one goal line per lease:
`goal leader_failover_<lease>s: X s (target <= lease + tick + poll) OK|MISSED`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from controller.services.rollouts import TICKING
from tests.fleet import postgres_available, postgres_database
from tests.replicas import shared_mosquitto, start_replica, wait_leader

TICK_S = 0.5
POLL_S = 1.0  # a follower's lease poll (controller.services.leadership.LeaseConfig)


def _wait_for_line(log_file: Path, line: str, skip_bytes: int, timeout_s: float) -> float:
    """Seconds until ``line`` appears in ``log_file`` past its first ``skip_bytes``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with log_file.open("rb") as f:
            f.seek(skip_bytes)
            if line.encode() in f.read():
                return time.monotonic() - started
        time.sleep(0.01)
    raise TimeoutError(f"{line!r} not in {log_file} within {timeout_s} s")


def _one_round(root: Path, lease_s: float) -> tuple[float, float]:
    data_dir = root / "controllers"
    with postgres_database() as db_url, shared_mosquitto(data_dir) as broker:
        a = start_replica(data_dir, db_url, broker, "a", lease_s=lease_s, tick_s=TICK_S)
        b = None
        try:
            wait_leader(db_url, "a", 10)
            b = start_replica(data_dir, db_url, broker, "b", lease_s=lease_s, tick_s=TICK_S)
            time.sleep(lease_s / 2)  # somewhere inside a renewal period
            seen = b.log_file.stat().st_size
            a.kill()
            killed = time.monotonic()
            wait_leader(db_url, "b", lease_s + 10)
            took_over = time.monotonic() - killed
            _wait_for_line(b.log_file, TICKING, seen, lease_s + 10)
            return took_over, time.monotonic() - killed
        finally:
            a.stop()
            if b is not None:
                b.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--leases", default="2,5")
    args = parser.parse_args()
    if not postgres_available():
        print("no PostgreSQL at 127.0.0.1:5432: nothing measured")
        return 2
    leases = [float(x) for x in args.leases.split(",") if x]
    results: dict[float, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        for lease in leases:
            results[lease] = [
                _one_round(Path(tmp) / f"l{lease}-r{i}", lease) for i in range(args.rounds)
            ]
    ok = True
    print(f"{'lease s':>8} {'lease taken s (median, max)':>30} {'first tick s (max)':>20} "
          f"{'max / lease':>12}")  # fmt: skip
    for lease, rounds in results.items():
        taken = [r[0] for r in rounds]
        ticks = [r[1] for r in rounds]
        print(f"{lease:8.1f} {statistics.median(taken):14.2f} {max(taken):14.2f} "
              f"{max(ticks):20.2f} {max(ticks) / lease:12.2f}")  # fmt: skip
    for lease, rounds in results.items():
        worst = max(r[1] for r in rounds)
        target = lease + TICK_S + POLL_S
        verdict = "OK" if worst <= target else "MISSED"
        ok &= verdict == "OK"
        print(f"goal leader_failover_{lease:g}s: {worst:.2f} s (target <= {target:.1f}) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
