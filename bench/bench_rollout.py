"""Rollout speed and update cost, measured in one run.

Run from the repository root:  .venv/bin/python bench/bench_rollout.py [--agents 20,100]

For each fleet size: a real controller (built model versions, signed TUF metadata), N
in-process agents built by the shipped assembly (agent.assembly.build_agent) on the real
network paths (mutual-TLS gRPC desired-state pull, reports,
artifact stream and metadata; retained MQTT desired state), a first rollout (v1) and then a
timed three-stage rollout of v2 (soak 0.5 s, gates fed by the metrics stand-in of
tests/rollout_fleet.py). Prints the time from `rollout start` to every device healthy and
the bytes each device received per update (artifact chunks + TUF metadata over the stream).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from agent.assembly import AgentConfig, OtaSettings, build_agent
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from agent.ota import machine as m
from agent.ota.remote import UpdateServiceSource
from agent.ota.service import OtaService
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, start_controller
from tests.rollout_fleet import VariantMetrics, add_and_build, speed_up, wait_for


@dataclass
class Counted:
    """Bytes one agent received, split by kind."""

    artifact: int = 0
    metadata: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[int, int]:
        with self.lock:
            out = (self.artifact, self.metadata)
            self.artifact = self.metadata = 0
            return out


class CountingSource(UpdateServiceSource):
    """The agent's update source, counting the artifact and metadata bytes it receives."""

    def __init__(self, channel: grpc.Channel, timeout_s: float, counted: Counted) -> None:
        super().__init__(channel, timeout_s)
        self.counted = counted

    def chunks(self, target: m.TargetInfo, offset: int) -> Iterator[bytes]:
        for chunk in super().chunks(target, offset):
            with self.counted.lock:
                self.counted.artifact += len(chunk)
            yield chunk

    def transport(self, path: str) -> bytes:
        data = super().transport(path)
        with self.counted.lock:
            self.counted.metadata += len(data)
        return data


@dataclass
class BenchAgent:
    service: OtaService
    counted: Counted
    close: list[Callable[[], object]]


def start_agent(data_dir: Path, ident: Identity) -> BenchAgent:
    counted = Counted()
    ota = OtaSettings(
        poll_interval_s=2.0, tick_interval_s=0.1, probation_s=0.3, max_retries=5,
        backoff_base_s=0.2, smoke_frames=1, download_timeout_s=60.0,
    )  # fmt: skip
    agent = build_agent(
        AgentConfig(data_dir, heartbeat_interval_s=30.0, rpc_timeout_s=10.0, ota=ota, threads=1),
        update_source=lambda channel, timeout_s: CountingSource(channel, timeout_s, counted),
    )
    assert agent.ota is not None
    agent.start()
    return BenchAgent(agent.ota.service, counted, [agent.stop])


def run_rollout(
    stub: rollouts_pb2_grpc.RolloutAdminServiceStub, version: int, n: int, ctl: Any
) -> tuple[float, float]:
    """(seconds to the rollout's `completed`, seconds until every device reported committed)."""
    start = time.perf_counter()
    rid = stub.StartRollout(
        rollouts_pb2.StartRolloutRequest(
            model="tiny", version=version, selector={"site": "bench"}, stages=[0.1, 0.5, 1.0],
            min_devices=1, soak_seconds=0.5, min_samples=100, max_concurrent_downloads=50,
        ),
        timeout=30,
    ).rollout.rollout_id  # fmt: skip

    shown = [0.0]

    def done() -> bool:
        r = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=30)
        if time.perf_counter() - shown[0] > 15:
            shown[0] = time.perf_counter()
            print(f"  v{version}: {r.rollout.phase} stage {r.rollout.stage}/{r.rollout.stages}, "
                  f"{r.rollout.healthy}/{n} healthy: {r.explanation.splitlines()[-1:]}",
                  file=sys.stderr, flush=True)  # fmt: skip
        if r.rollout.phase in ("halted", "rolled_back", "aborted"):
            raise RuntimeError(f"rollout {rid} ended {r.rollout.phase}: {r.explanation}")
        return r.rollout.phase == "completed"

    wait_for(f"rollout of v{version} to {n} agents", done, timeout=900)
    took = time.perf_counter() - start

    def committed() -> bool:
        statuses = ctl.rollouts.store.statuses().values()
        return sum(1 for st in statuses if st.reported_state == "committed"
                   and f":{version}:" in st.reported_variant) == n  # fmt: skip

    wait_for(f"every device committed v{version}", committed, timeout=300)
    healthy = time.perf_counter() - start
    r = stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=30)
    states = collections.Counter(
        f"{d['state']} {d['reason']}".strip() for d in json.loads(r.state_json)["devices"]
    )
    print(f"  v{version}: rollout completed in {took:.1f} s ({dict(states)}); every device "
          f"reported committed after {healthy:.1f} s", flush=True)  # fmt: skip
    return took, healthy


def bench(n: int, root: Path) -> dict[str, float]:
    ctl = start_controller(root / "controller", grpc_workers=64)
    admin = Admin(ctl)
    agents: list[BenchAgent] = []
    try:
        v1 = add_and_build(admin, root, "tiny", 8)
        v2 = add_and_build(admin, root, "tiny", 6)
        ctl.rollouts.metrics = VariantMetrics(ctl, bad=lambda v: False)
        speed_up(ctl)
        facts, address = detect(), f"127.0.0.1:{ctl.grpc_port}"
        t0 = time.perf_counter()
        for i in range(n):
            name = f"b{i:03d}"
            ident = enroll(root / name, address, admin.register(name, "auto", site="bench"), facts)
            agents.append(start_agent(root / name, ident))
        enroll_s = time.perf_counter() - t0
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        first_s, first_h = run_rollout(stub, v1, n, ctl)
        first = [a.counted.take() for a in agents]
        second_s, second_h = run_rollout(stub, v2, n, ctl)
        second = [a.counted.take() for a in agents]
        size = ctl.models.selected_variant("tiny", v2, detect_profile(ctl))
        return {
            "agents": n,
            "enroll_s": enroll_s,
            "first_rollout_s": first_s,
            "first_healthy_s": first_h,
            "rollout_s": second_s,
            "healthy_s": second_h,
            "artifact_bytes": float(size.size) if size is not None else 0.0,
            "first_artifact": statistics.mean(a for a, _ in first),
            "first_metadata": statistics.mean(b for _, b in first),
            "update_artifact": statistics.mean(a for a, _ in second),
            "update_metadata": statistics.mean(b for _, b in second),
        }
    finally:
        for a in agents:
            for close in a.close:
                close()
        admin.close()
        ctl.stop()


HEALTHY_GOAL_S = 60.0  # rollout start -> every device committed, soak included
UPDATE_BYTES_GOAL = 1.2  # artifact + TUF metadata a device receives, over the artifact


def detect_profile(ctl: object) -> str:
    devices = ctl.registry.list_devices({"site": "bench"})  # type: ignore[attr-defined]
    return str(devices[0].profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="20,100", help="fleet sizes, comma separated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows = []
    for n in (int(x) for x in args.agents.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"bench-rollout-{n}-") as tmp:
            row = bench(n, Path(tmp))
        rows.append(row)
        print(
            f"{n:4d} agents: enroll+start {row['enroll_s']:.1f} s; first rollout (v1, from "
            f"nothing) completed {row['first_rollout_s']:.1f} s, all committed "
            f"{row['first_healthy_s']:.1f} s; rollout start -> 100% healthy (v1 -> v2, 3 stages, "
            f"soak 0.5 s): completed {row['rollout_s']:.1f} s, every device committed "
            f"{row['healthy_s']:.1f} s",
            flush=True,
        )
        print(
            f"      bytes per device: first install {row['first_artifact']:.0f} artifact + "
            f"{row['first_metadata']:.0f} metadata; update {row['update_artifact']:.0f} "
            f"artifact + {row['update_metadata']:.0f} metadata (signed artifact "
            f"{row['artifact_bytes']:.0f} B; overhead "
            f"{(row['update_artifact'] + row['update_metadata']) / row['artifact_bytes']:.2f}x)",
            flush=True,
        )
    for row in rows:
        size, took = int(row["agents"]), row["healthy_s"]
        ok = "OK" if took < HEALTHY_GOAL_S else "MISSED"
        goal = f"target < {HEALTHY_GOAL_S:.0f} s"
        print(f"goal rollout_to_healthy_{size}: {took:.1f} s ({goal}) {ok}")
        sent = (row["update_artifact"] + row["update_metadata"]) / row["artifact_bytes"]
        ok = "OK" if sent <= UPDATE_BYTES_GOAL else "MISSED"
        print(f"goal update_bytes_{size}: {sent:.2f}x the artifact "
              f"(target <= {UPDATE_BYTES_GOAL}x) {ok}")  # fmt: skip
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        fleet, time_ratio = b["agents"] / a["agents"], b["healthy_s"] / a["healthy_s"]
        print(f"ratio: {fleet:.0f}x the agents took {time_ratio:.2f}x the time to 100% healthy")
        ok = "OK" if time_ratio <= fleet else "MISSED"
        print(f"goal rollout_scaling: {time_ratio:.2f}x time for {fleet:.0f}x agents "
              f"(target <= {fleet:.0f}x, linear) {ok}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
