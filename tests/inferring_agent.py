"""An in-process agent that really runs its model: the OTA component on the real network
paths (mutual-TLS gRPC, retained MQTT desired state) swaps the model an inference thread
runs (ONNX Runtime, one thread), whose latencies and errors go into the agent's
TelemetryAggregator and out as real TelemetryReports over MQTT every ``report_s`` — and
into ``OtaService.observe`` as probation health, as the daemon does."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials, Identity
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from agent.ota import machine as m
from agent.ota.component import onnx_smoke_test
from agent.ota.remote import DesiredStateClient, UpdateServiceSource
from agent.ota.service import OtaConfig, OtaService
from agent.ota.slots import SlotStore
from agent.telemetry.aggregator import TelemetryAggregator
from controller.app import Controller
from tests.fleet import Admin

_DTYPES = {"float32": np.float32, "uint8": np.uint8}


@dataclass
class InferringAgent:
    device_id: str
    service: OtaService
    telemetry: TelemetryAggregator
    mqtt: AgentMqttClient
    fps: float
    report_s: float
    model: Any = None  # agent.runtime.model.LoadedModel once OTA installed one
    frames: int = 0
    reports: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _close: list[Any] = field(default_factory=list)

    @property
    def variant(self) -> str | None:
        return self.service.current_variant

    @property
    def running(self) -> str | None:
        """The variant the inference thread runs right now."""
        return None if self.model is None else str(self.model.metadata.variant_id)

    def on_model_update(self, variant_dir: Path) -> None:
        from agent.runtime.model import load_variant

        model = load_variant(variant_dir, 1)
        self.telemetry.set_model(model.metadata.model, model.metadata.variant_id)
        self.mqtt.set_active_variant(model.metadata.variant_id)
        self.model = model

    def _infer(self) -> None:
        period = 1.0 / self.fps
        rng = np.random.default_rng(0)
        window: list[float] = []
        errors = 0
        while not self._stop.wait(period):
            model = self.model
            if model is None:
                continue
            meta = model.metadata
            shape = tuple(1 if d < 0 else d for d in meta.input_shape)
            x = (rng.random(shape) * 255).astype(_DTYPES.get(meta.input_dtype, np.float32))
            start = time.perf_counter()
            try:
                out = np.asarray(model.run(x))
                ok = bool(np.all(np.isfinite(out)))
            except Exception:
                ok = False
            ms = (time.perf_counter() - start) * 1000
            if ok:
                self.telemetry.record_frame(ms, ms, 0.9)
            else:
                errors += 1
                self.telemetry.record_error("inference")
            self.frames += 1
            window.append(ms)
            if len(window) >= 10:  # probation health, as the daemon feeds it
                self.service.observe(
                    m.ProbationMetrics(len(window), errors / len(window), float(np.median(window)))
                )
                window, errors = [], 0

    def _publish(self) -> None:
        while not self._stop.wait(self.report_s):
            report = self.telemetry.report()
            if report.frames or report.errors:
                self.mqtt.publish("telemetry", report.SerializeToString())
                self.reports += 1

    def start(self) -> None:
        for target in (self._infer, self._publish):
            t = threading.Thread(target=target, name=f"{target.__name__}-{self.device_id}")
            t.daemon = True
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for close in reversed(self._close):
            close()


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
    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    source = UpdateServiceSource(channel, timeout_s=30)
    from agent.ota.verify import TufVerifier

    mqtt = AgentMqttClient(
        AgentMqttConfig(
            url=identity.mqtt_url, device_id=identity.device_id, username=identity.mqtt_username,
            password=identity.mqtt_password, heartbeat_interval_s=5.0,
        )
    )  # fmt: skip
    holder: list[InferringAgent] = []
    update = m.UpdateConfig(max_retries=3, backoff_base=0.1, probation_seconds=probation_s)
    service = OtaService(
        SlotStore(data_dir / "ota"),
        desired=DesiredStateClient(channel, 5.0),
        chunks=source.chunks,
        verifier=TufVerifier(data_dir / "tuf", source.transport, identity.profile),
        smoke_test=onnx_smoke_test(frames=2, threads=1),
        on_model_update=lambda path: holder[0].on_model_update(path),
        config=OtaConfig(poll_interval_s=1.0, tick_interval_s=0.1, update=update),
    )
    agent = InferringAgent(
        identity.device_id, service, TelemetryAggregator(identity.device_id), mqtt, fps, report_s
    )
    holder.append(agent)
    installed = service.recover()
    if installed is not None:
        agent.on_model_update(installed)
    mqtt.on_desired(service.submit)
    mqtt.start()
    service.start()
    agent.start()
    agent._close.extend([channel.close, mqtt.stop, service.stop])
    return agent
