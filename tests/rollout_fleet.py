"""Test helpers for rollouts: a real controller with built model versions, and in-process
agents built by the shipped assembly (agent.assembly.build_agent: OTA on the real network
paths — mutual-TLS gRPC DesiredStateService and UpdateService, MQTT retained desired state —
and gRPC heartbeats; no frame source)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

import numpy as np

from agent.assembly import AgentConfig, OtaSettings, build_agent
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from agent.mqtt.client import AgentMqttClient
from agent.ota.service import OtaService
from controller.app import Controller
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from controller.services.rollouts import RolloutConfig
from edgefleet.modelmeta import Preprocessing
from edgefleet.v1 import models_pb2, models_pb2_grpc, rollouts_pb2, rollouts_pb2_grpc
from tests.fleet import Admin, controller_with_admin

PRE = Preprocessing(size=(32, 32), channels=1)


AGENT_CLI = Path(sys.executable).parent / "edgefleet-agent"


def enroll_with_cli(admin: Admin, data_dir: Path, name: str, **labels: str) -> str:
    """Register ``name`` and enroll it with the real `edgefleet-agent enroll`; its device id."""
    enrolled = subprocess.run(
        [str(AGENT_CLI), "enroll", "--controller", admin.address, "--token",
         admin.register(name, "auto", **labels), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    return next(d.device_id for d in admin.devices() if d.name == name)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def add_and_build(admin: Admin, tmp: Path, name: str, seed_width: int) -> int:
    """Add and build a tiny model version (fp32 variant only); returns its version."""
    version = add_tiny(admin, tmp, name, seed_width)
    stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
    request = models_pb2.BuildModelRequest(
        name=name, version=version, no_tflite=True, only_variants=["onnx-fp32"],
        measure_runs=2,
    )  # fmt: skip
    list(stub.BuildModel(request, timeout=120))
    return version


def add_tiny(admin: Admin, tmp: Path, name: str, seed_width: int) -> int:
    """Upload and add (not build) a tiny model version; returns its version."""
    stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
    onnx = make_tiny_cnn(tmp / f"{name}-{seed_width}.onnx", width=seed_width)
    x = synthetic_frames(32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=self_labels(onnx, x, PRE))

    def upload(data: bytes) -> str:
        chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        reqs = iter(models_pb2.UploadArtifactChunk(data=c) for c in chunks)
        return str(stub.UploadArtifact(reqs, timeout=30).sha256)

    model = stub.AddModel(
        models_pb2.AddModelRequest(
            name=name,
            onnx_sha256=upload(onnx.read_bytes()),
            validation_sha256=upload(buf.getvalue()),
        ),
        timeout=30,
    ).model
    return int(model.version)


class VariantMetrics:
    """Stands in for fleet telemetry: cohort metrics derived from what each device runs
    (a variant in ``bad`` is slower and agrees less with the cloud)."""

    def __init__(self, controller: Controller, bad: Callable[[str], bool]) -> None:
        self._c, self._bad = controller, bad

    def cohort_metrics(self, ids: Iterable[str], since_ms: int, until_ms: int | None = None) -> Any:
        ids = list(ids)
        statuses = self._c.rollouts.store.statuses(ids)
        bad = sum(1 for i in ids if i in statuses and self._bad(statuses[i].running_variant))
        share = bad / len(ids) if ids else 0.0
        return SimpleNamespace(
            frames=200 * len(ids), devices_reporting=len(ids), local_p95_ms=10 + 40 * share,
            local_p50_ms=5.0, p95_latency_ms=60.0, p50_latency_ms=20.0,
            agreement=0.98 - 0.2 * share, error_rate=0.0, offload_rate=0.1,
        )  # fmt: skip


@dataclass
class FleetAgent:
    name: str
    identity: Identity
    service: OtaService
    mqtt: AgentMqttClient
    close: Callable[[], None]

    @property
    def variant(self) -> str | None:
        return self.service.current_variant


def speed_up(controller: Controller, tick_s: float = 0.2) -> None:
    controller.rollouts.config = RolloutConfig(tick_interval_s=tick_s)
    controller.rollouts.poke()


def start_agents(
    controller: Controller,
    admin: Admin,
    root: Path,
    n: int,
    *,
    probation_s: float = 0.3,
    **labels: str,
) -> list[FleetAgent]:
    agents = []
    address = f"127.0.0.1:{controller.grpc_port}"
    facts = detect()
    for i in range(n):
        name = f"dev-{i:03d}"
        token = admin.register(name, "auto", **labels)
        data_dir = root / name
        identity = enroll(data_dir, address, token, facts)
        agents.append(start_agent(data_dir, identity, probation_s=probation_s))
    return agents


def start_agent(data_dir: Path, identity: Identity, *, probation_s: float = 0.3) -> FleetAgent:
    """The agent as `edgefleet-agent run --no-model` builds it, polling and ticking faster."""
    ota = OtaSettings(
        poll_interval_s=1.0, tick_interval_s=0.1, probation_s=probation_s, max_retries=3,
        backoff_base_s=0.1, smoke_frames=2,
    )  # fmt: skip
    agent = build_agent(AgentConfig(data_dir, ota=ota))
    assert agent.ota is not None and agent.mqtt is not None
    agent.start()
    return FleetAgent(identity.device_id, identity, agent.ota.service, agent.mqtt, agent.stop)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rollout_status(
    stub: rollouts_pb2_grpc.RolloutAdminServiceStub, rid: str
) -> rollouts_pb2.GetRolloutResponse:
    return stub.GetRollout(rollouts_pb2.GetRolloutRequest(rollout_id=rid), timeout=10)


class _Closes(Protocol):
    def close(self) -> None: ...


_Agents = TypeVar("_Agents", bound=Iterable[_Closes])


@dataclass
class RolloutRig:
    """A real controller with its rollout engine sped up, an admin connection, the rollout
    admin stub, and the agents a test keeps: ``rollout_rig`` closes them all."""

    ctl: Controller
    admin: Admin
    stub: rollouts_pb2_grpc.RolloutAdminServiceStub
    agents_dir: Path
    agents: list[_Closes] = field(default_factory=list)

    def keep(self, agents: _Agents) -> _Agents:
        """Close ``agents`` on exit; returns them."""
        self.agents.extend(agents)
        return agents

    def start_agents(self, n: int, *, probation_s: float = 0.3, **labels: str) -> list[FleetAgent]:
        """``start_agents`` in ``agents_dir``, kept."""
        return self.keep(
            start_agents(
                self.ctl, self.admin, self.agents_dir, n, probation_s=probation_s, **labels
            )
        )


@contextmanager
def rollout_rig(tmp_path: Path) -> Iterator[RolloutRig]:
    """A controller in ``tmp_path / "controller"`` (``speed_up``) and an ``Admin`` on it, agents
    in ``tmp_path / "agents"``; on exit the kept agents, the admin connection and the
    controller are closed, in that order."""
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        stub = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        rig = RolloutRig(ctl, admin, stub, tmp_path / "agents")
        try:
            speed_up(ctl)
            yield rig
        finally:
            for a in rig.agents:
                a.close()
