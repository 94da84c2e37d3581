"""The controller at fleet scale, driven by the fleet simulator (controller/simulate), in one run.

    .venv/bin/python bench/bench_fleet_scale.py [--sizes 200,1000] [--ingest-devices 1000]
        [--ingest-rate 6] [--ingest-seconds 60] [--processes 2]

One controller (this process: gRPC, its supervised Mosquitto, HTTP) on a fresh PostgreSQL
database at 127.0.0.1:5432; simulated devices in ``--processes`` other processes, each device
enrolled with its own key and on its own MQTT connection (see controller/simulate).

1. For each fleet size: enroll and connect the devices, measure the controller's RSS per
   connected device (RSS after minus before, over the devices), then time a first rollout (v1,
   nothing installed) and an update rollout (v1 -> v2), each from StartRollout to every device
   healthy (three stages 10/50/100 %, soak per stage, the default gates on the devices' real
   telemetry).
2. Telemetry ingest: ``--ingest-devices`` devices each publish ``--ingest-rate`` reports/s
   (QoS 1); after a warm-up, reports written to PostgreSQL per second over ``--ingest-seconds``
   and the controller process's CPU seconds over the same window: written/s per core.

Goals (the issue's): ingest >= 5,000 reports/s per controller core; rollout start -> 100 %
healthy for 1,000 devices < 60 s plus the soak.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from controller.app import Controller  # noqa: E402
from controller.simulate.run import Simulation, SimulationConfig  # noqa: E402
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc  # noqa: E402
from tests.fleet import POSTGRES_ADMIN_URL, Admin, postgres_available, start_controller  # noqa: E402
from tests.rollout_fleet import add_and_build, wait_for  # noqa: E402

INGEST_GOAL = 5_000.0  # reports/s per controller core
HEALTHY_GOAL_S = 60.0  # plus the soak
STAGES = (0.1, 0.5, 1.0)
WARMUP_S = 10.0


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database of its own name (not edgefleet_test_*, which test runs may clear)."""
    import psycopg

    name = f"edgefleet_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def goal(name: str, measured: str, op: str, target: str, ok: bool) -> None:
    print(f"goal {name}: {measured} (target {op} {target}) {'OK' if ok else 'MISSED'}", flush=True)


def rss_mib(ctl: Controller) -> tuple[float, float]:
    """(this process: the controller, its Mosquitto) resident memory in MiB."""
    me = psutil.Process()
    broker = sum(
        p.memory_info().rss for p in me.children(recursive=True) if "mosquitto" in p.name()
    )
    return me.memory_info().rss / 2**20, broker / 2**20


def cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def start_sim(ctl: Controller, admin: Admin, config: SimulationConfig) -> Simulation:
    ca = (ctl.config.data_dir / "pki" / "ca.pem").read_bytes()
    sim = Simulation(admin.channel, ca, admin.address, config)
    sim.start()
    sim.wait_ready()
    return sim


def rollout(admin: Admin, group: str, version: int, n: int, soak_s: float) -> float:
    """Seconds from StartRollout to the rollout completed with all ``n`` devices healthy."""
    stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
    start = time.perf_counter()
    rid = stub.StartRollout(
        rollouts_pb2.StartRolloutRequest(
            model="tiny", version=version, selector={"group": group}, stages=list(STAGES),
            min_devices=1, soak_seconds=soak_s, min_samples=100, max_concurrent_downloads=100,
        ),
        timeout=600,
    ).rollout.rollout_id  # fmt: skip
    print(f"    v{version}: StartRollout answered after {time.perf_counter() - start:.1f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    shown = [start]

    def done() -> bool:
        got = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=30)
        r = got.rollout
        if r.phase in ("halted", "rolled_back", "aborted", "rolling_back"):
            raise RuntimeError(f"rollout {rid} {r.phase}: {got.explanation}")
        if time.perf_counter() - shown[0] > 5:
            shown[0] = time.perf_counter()
            why = got.explanation.splitlines()[-1:]
            print(f"    v{version}: {r.phase} stage {r.stage}/{r.stages}, {r.healthy}/{n} healthy"
                  f" at {shown[0] - start:.0f} s: {why}", file=sys.stderr, flush=True)  # fmt: skip
        return r.phase == "completed" and r.healthy == n

    wait_for(f"rollout of v{version} to {n} devices", done, timeout=900)
    return time.perf_counter() - start


def bench_size(
    ctl: Controller, admin: Admin, n: int, versions: tuple[int, int], args: argparse.Namespace
) -> dict[str, float]:
    group = f"g{n}"
    before, broker_before = rss_mib(ctl)
    config = SimulationConfig(
        devices=n, processes=args.processes, report_rate=args.rollout_rate,
        heartbeat_interval_s=30.0,
        poll_interval_s=30.0, duration_s=3600.0, frames_per_report=200, labels={"group": group},
    )  # fmt: skip
    sim = start_sim(ctl, admin, config)
    try:

        def online() -> int:
            return sum(d.online for d in ctl.registry.list_devices({"group": group}))

        deadline = time.monotonic() + 180
        while online() < n and time.monotonic() < deadline:
            time.sleep(1.0)
        if (seen := online()) < n:
            print(f"  {n} devices: only {seen} online after 180 s", flush=True)
        time.sleep(5.0)  # a few reports and heartbeats from every device
        after, broker_after = rss_mib(ctl)
        print(f"  {n} devices enrolled and connected in {sim.enroll_s:.1f} s; controller RSS "
              f"{before:.0f} -> {after:.0f} MiB, its Mosquitto {broker_before:.1f} -> "
              f"{broker_after:.1f} MiB", flush=True)  # fmt: skip
        first = rollout(admin, group, versions[0], n, args.soak)
        print(f"  {n} devices: first rollout (v{versions[0]}) {first:.1f} s", flush=True)
        update = rollout(admin, group, versions[1], n, args.soak)
        print(f"  {n} devices: update rollout (v{versions[0]} -> v{versions[1]}) {update:.1f} s",
              flush=True)  # fmt: skip
    finally:
        result = sim.stop()
    s = result.stats
    print(f"  {n} devices: {s['updates']} updates, {s['update_errors']} update errors, "
          f"{s['mqtt_reconnects']} MQTT reconnects, {s['connected_at_end']}/{n} connected at "
          f"the end; desired states pushed over MQTT {s['desired_pushed']}, pulled over gRPC "
          f"{s['desired_pulled']}", flush=True)  # fmt: skip
    return {
        "first_s": first,
        "update_s": update,
        "rss_kib_per_device": (after - before) * 1024 / n,
        "broker_kib_per_device": (broker_after - broker_before) * 1024 / n,
    }


def bench_ingest(ctl: Controller, admin: Admin, args: argparse.Namespace) -> dict[str, float]:
    n, rate = args.ingest_devices, args.ingest_rate
    config = SimulationConfig(
        devices=n, processes=args.processes, report_rate=rate, heartbeat_interval_s=10.0,
        poll_interval_s=600.0, duration_s=WARMUP_S + args.ingest_seconds + 5.0,
        frames_per_report=200, labels={"group": "ingest"},
    )  # fmt: skip
    sim = start_sim(ctl, admin, config)
    try:
        time.sleep(WARMUP_S)
        stats = ctl.telemetry.stats
        w0, r0, c0, t0 = stats.written, ctl.ingest.stats.telemetry_received, cpu_s(), time.time()
        time.sleep(args.ingest_seconds)
        w1, r1, c1, t1 = stats.written, ctl.ingest.stats.telemetry_received, cpu_s(), time.time()
    finally:
        result = sim.join()
    wall, cpu = t1 - t0, c1 - c0
    written_s, received_s = (w1 - w0) / wall, (r1 - r0) / wall
    cores = cpu / wall
    sent_s = result.stats["reports"] / max(result.ran_s, 1e-9)
    print(f"  ingest: {n} devices x {rate:g} reports/s offered {n * rate:.0f}/s, the simulator "
          f"sent {sent_s:.0f}/s; over {wall:.0f} s after a {WARMUP_S:.0f} s warm-up the "
          f"controller received {received_s:.0f}/s and wrote {written_s:.0f}/s to PostgreSQL "
          f"using {cores:.2f} cores ({cpu:.1f} CPU s)", flush=True)  # fmt: skip
    ingest = ctl.ingest.stats
    lost = result.stats["acked"] - result.stats["heartbeats"] - ingest.telemetry_received
    print(f"  ingest: over the whole run the broker acknowledged about {lost} more reports to the "
          f"devices than the controller received (its queue for the ingest full, or still held "
          f"when the run ended)", flush=True)  # fmt: skip
    print(f"  ingest: store queue drops {stats.dropped_queue_full}, write errors "
          f"{stats.write_errors}, rate-limited {ingest.dropped_rate_limited}, invalid "
          f"{ingest.dropped_invalid_report}", flush=True)  # fmt: skip
    saturated = written_s < 0.95 * n * rate or stats.dropped_queue_full > 0
    if not saturated:
        print(
            "  ingest: NOT saturated (the controller kept up with everything offered): the "
            "per-core figure is what it spent on this load, not its ceiling",
            flush=True,
        )
    return {"per_core": written_s / cores if cores > 0 else 0.0, "written_s": written_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--ingest-devices", type=int, default=1000)
    parser.add_argument("--ingest-rate", type=float, default=6.0)
    parser.add_argument("--ingest-seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--soak", type=float, default=0.5, help="soak seconds per stage")
    parser.add_argument(
        "--rollout-rate", type=float, default=0.2, help="reports/s per device in the rollouts"
    )
    parser.add_argument("--tick", type=float, default=0.5, help="rollout_tick_s (default 2.0)")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--reload-interval", type=float, default=0.1,
        help="mqtt_reload_interval_s (default 1.0): an enrollment waits for the broker's reload, "
        "and every simulated device enrolls from this one address, two at a time",
    )  # fmt: skip
    parser.add_argument(
        "--broker-inflight", type=int, default=0,
        help="experiment: the supervised Mosquitto's max_inflight_messages (0 = its default, 20)",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.broker_inflight:
        import functools

        import controller.mqtt_setup
        from controller.mqtt.mosquitto_conf import BrokerLimits

        controller.mqtt_setup.BrokerLimits = functools.partial(  # type: ignore[misc]
            BrokerLimits, max_inflight_messages=args.broker_inflight
        )
        print(f"experiment: the broker's max_inflight_messages is {args.broker_inflight}")
    logging.basicConfig(level=logging.ERROR)
    if not postgres_available():
        print("no PostgreSQL at 127.0.0.1:5432 (trust auth): nothing measured", file=sys.stderr)
        return 2
    print(f"fleet scale: {psutil.cpu_count()} cores; controller on PostgreSQL, MQTT reload "
          f"interval {args.reload_interval:g} s, rollout tick {args.tick:g} s, soak "
          f"{args.soak:g} s x {len(STAGES)} stages; simulator in {args.processes} processes on "
          f"the same machine", flush=True)  # fmt: skip
    results: dict[int, dict[str, float]] = {}
    ingest: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, bench_database() as url:
        root = Path(tmp)
        ctl = start_controller(root / "controller", db=url, grpc_workers=64,
                               rollout_tick_s=args.tick,
                               mqtt_reload_interval_s=args.reload_interval)  # fmt: skip
        admin = Admin(ctl)
        try:
            v1 = add_and_build(admin, root, "tiny", 8)
            versions = (v1, add_and_build(admin, root, "tiny", 6))
            for n in sizes:
                results[n] = bench_size(ctl, admin, n, versions, args)
            if not args.skip_ingest:
                ingest = bench_ingest(ctl, admin, args)
        finally:
            admin.close()
            ctl.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine load average at the end (1, 5, 15 min): {load} on {psutil.cpu_count()} cores")
    soak_total = args.soak * len(STAGES)
    for n, r in results.items():
        print(f"devices {n}: controller RSS {r['rss_kib_per_device']:.1f} KiB per connected "
              f"device (its Mosquitto {r['broker_kib_per_device']:.1f} KiB)")  # fmt: skip
        for kind in ("first", "update"):
            goal(f"rollout_{kind}_healthy_{n}", f"{r[f'{kind}_s']:.1f} s", "<",
                 f"{HEALTHY_GOAL_S:.0f} s + soak {soak_total:g} s",
                 r[f"{kind}_s"] < HEALTHY_GOAL_S + soak_total)  # fmt: skip
    if ingest:
        goal("telemetry_ingest_per_core", f"{ingest['per_core']:.0f} reports/s/core", ">=",
             f"{INGEST_GOAL:.0f}", ingest["per_core"] >= INGEST_GOAL)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
