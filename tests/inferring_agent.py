"""In-process agents that really run their model: each is the shipped assembly
(agent.assembly.build_agent: OTA on the real network paths — mutual-TLS gRPC, retained MQTT
desired state —, the active model, the telemetry publisher sending real TelemetryReports over
MQTT every ``report_s``, heartbeats) with one stand-in: instead of the frame loop, a thread
runs the active model (ONNX Runtime, one thread) on sample inputs at ``fps`` and times the
model run alone, recording latencies and errors in the agent's TelemetryAggregator and its
probation health into the OTA service.

Why not the agent's own frame loop: these agents share one interpreter with the controller
and each other, so the loop's Python steps (preprocessing, confidence, telemetry) wait for the
GIL, and their p95 measures those waits (4-5 ms for a 0.1 ms model here) rather than the
model; latency gates compare p95s. The frame loop itself is tested in its own process
(tests/e2e/test_agent_probation_rollback.py) and in tests/integration/test_agent_listeners.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.assembly import AgentConfig, DeviceAgent, OtaSettings, build_agent
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from agent.inference.errors import NoModelYet
from agent.ota import machine as m
from controller.app import Controller
from tests.fleet import Admin

_DTYPES = {"float32": np.float32, "uint8": np.uint8}


@dataclass
class InferringAgent:
    device_id: str
    agent: DeviceAgent
    fps: float
    frames: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def variant(self) -> str | None:
        """The variant OTA installed (the active slot)."""
        assert self.agent.ota is not None
        return self.agent.ota.service.current_variant

    @property
    def running(self) -> str | None:
        """The variant the agent runs right now."""
        try:
            return self.agent.model.current().variant_id
        except NoModelYet:
            return None

    @property
    def reports(self) -> int:
        assert self.agent.publisher is not None
        return self.agent.publisher.publisher.published

    def start(self) -> None:
        self.agent.start()
        self._thread = threading.Thread(target=self._infer, name=f"infer-{self.device_id}")
        self._thread.daemon = True
        self._thread.start()

    def _infer(self) -> None:
        telemetry, ota = self.agent.telemetry, self.agent.ota
        assert telemetry is not None and ota is not None
        period = 1.0 / self.fps
        rng = np.random.default_rng(0)
        window: list[float] = []
        errors = 0
        while not self._stop.wait(period):
            try:
                model = self.agent.model.current()
            except NoModelYet:
                continue
            meta = model.metadata
            shape = tuple(1 if d < 0 else d for d in meta.input_shape)
            x = (rng.random(shape) * 255).astype(_DTYPES.get(meta.input_dtype, np.float32))
            start = time.perf_counter()
            try:
                ok = bool(np.all(np.isfinite(np.asarray(model.run(x)))))
            except Exception:
                ok = False
            ms = (time.perf_counter() - start) * 1000
            if ok:
                telemetry.record_frame(ms, ms, 0.9)
            else:
                errors += 1
                telemetry.record_error("inference")
            self.frames += 1
            window.append(ms)
            if len(window) >= 10:  # probation health, as the agent's probation feed reports it
                health = m.ProbationMetrics(
                    len(window), errors / len(window), float(np.median(window))
                )
                ota.service.observe(health)
                window, errors = [], 0

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.agent.stop()


def start_inferring_agents(
    controller: Controller,
    admin: Admin,
    root: Path,
    n: int,
    *,
    fps: float = 25.0,
    report_s: float = 0.5,
    probation_s: float = 0.5,
    **labels: str,
) -> list[InferringAgent]:
    address = f"127.0.0.1:{controller.grpc_port}"
    facts = detect()
    agents = []
    for i in range(n):
        name = f"inf-{i:03d}"
        data_dir = root / name
        identity = enroll(data_dir, address, admin.register(name, "auto", **labels), facts)
        agents.append(
            start_inferring_agent(
                data_dir, identity, fps=fps, report_s=report_s, probation_s=probation_s
            )
        )
    return agents


def start_inferring_agent(
    data_dir: Path, identity: Identity, *, fps: float, report_s: float, probation_s: float
) -> InferringAgent:
    ota = OtaSettings(
        poll_interval_s=1.0, tick_interval_s=0.1, probation_s=probation_s, max_retries=3,
        backoff_base_s=0.1, smoke_frames=2,
    )  # fmt: skip
    config = AgentConfig(data_dir, ota=ota, fps=fps, threads=1, telemetry_interval_s=report_s)
    agent = InferringAgent(identity.device_id, build_agent(config), fps)
    agent.start()
    return agent
