"""SIGKILL an OTA updater at random instants many times; count successful recoveries.

Run from the repository root:  .venv/bin/python bench/bench_ota_crash.py [--kills 200] [--seed 0]

Each round: fresh store with v1 committed, a child process applies v2 then v3 (slow writes,
slow chunks, short probations), the parent kills it after a random delay in [0, duration of
an uninterrupted run], then ``recover()`` must return a slot whose files verify and whose
ONNX model loads and computes x + version. Uses the harness of
tests/integration/test_ota_crash.py.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.ota.slots import SlotStore
from tests.integration.test_ota_crash import check_recovered, prepare, run_child


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ota-crash-"))
    try:
        spec = prepare(work / "calibrate")
        _, duration = run_child(spec, None)
        print(f"uninterrupted child run: {duration * 1000:.0f} ms (v1 -> v2 -> v3)")
        kills = rounds = ok = 0
        versions: collections.Counter[int] = collections.Counter()
        events: collections.Counter[str] = collections.Counter()
        failures: list[str] = []
        started = time.monotonic()
        while kills < args.kills:
            rounds += 1
            round_dir = work / f"r{rounds}"
            spec = prepare(round_dir)
            killed, _ = run_child(spec, rng.uniform(0.0, duration))
            kills += killed
            # What recovery had to do (peek before the checked recovery consumes it).
            peek = SlotStore(Path(spec["root"])).recover()
            for e in peek.events:
                events[e.split(":")[0].split(" slot")[0]] += 1
            if peek.state.probation is not None:
                events["restarted in probation (boot counter +1)"] += 1
            try:
                versions[check_recovered(Path(spec["root"]))] += 1
                ok += 1
            except AssertionError as exc:
                failures.append(f"round {rounds}: {exc}")
            shutil.rmtree(round_dir, ignore_errors=True)
        elapsed = time.monotonic() - started
        print(
            f"rounds: {rounds}, SIGKILLs delivered: {kills}, finished before kill: {rounds - kills}"
        )
        print(f"successful recoveries: {ok}/{rounds} ({elapsed:.0f} s)")
        print("recovered version: " + ", ".join(f"v{v}: {n}" for v, n in sorted(versions.items())))
        print(
            "recovery actions: "
            + (", ".join(f"{k}: {n}" for k, n in events.most_common()) or "none")
        )
        for f in failures[:10]:
            print("FAILED", f)
        return 0 if ok == rounds else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
