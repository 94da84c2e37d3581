"""The agent's OTA parts around OtaService: the ONNX smoke test, the probation feed (inference
events -> probation health) and the component that starts and stops the service. The
assembly (agent.assembly) builds them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from agent.inference.agent import InferenceEvent, Result
from agent.mqtt.client import AgentMqttClient
from agent.ota import machine as m
from agent.ota.service import OtaService
from agent.ota.smoke import SmokeRun, make_smoke_test

log = logging.getLogger(__name__)

_DTYPES = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8}


def onnx_smoke_test(
    *, frames: int = 4, threads: int | None = None, latency_budget_ms: float | None = None
) -> Callable[[Path], None]:
    """Load the variant with its runtime, run ``frames`` sample inputs, check the outputs."""

    def load_and_run(variant_dir: Path) -> SmokeRun:
        from agent.runtime.model import load_variant

        model = load_variant(variant_dir, threads)
        meta = model.metadata
        shape = tuple(1 if d < 0 else d for d in meta.input_shape)
        rng = np.random.default_rng(0)
        outputs, latencies = [], []
        for _ in range(frames):
            x = (rng.random(shape) * 255).astype(_DTYPES.get(meta.input_dtype, np.float32))
            start = time.perf_counter()
            outputs.append(model.run(x))
            latencies.append((time.perf_counter() - start) * 1000)
        return SmokeRun(outputs, latencies)

    return make_smoke_test(load_and_run, latency_budget_ms=latency_budget_ms)


class ProbationObserver(Protocol):
    def observe(self, metrics: m.ProbationMetrics) -> None: ...


class ProbationFeed:
    """An inference listener that turns answers and failed frames into probation health:
    every ``window`` frames of one variant, ``observe(ProbationMetrics(frames, share of frames
    the model failed on, median local latency of the answered ones))``. Frames of another
    variant (in flight across a swap) start a new window."""

    def __init__(self, observer: ProbationObserver, window: int = 20) -> None:
        self._observer, self._window = observer, window
        self._lock = threading.Lock()
        self._variant = ""
        self._latencies: list[float] = []
        self._failed = 0
        self.observed = 0  # windows handed to the observer

    def __call__(self, event: InferenceEvent) -> None:
        with self._lock:
            if event.variant_id != self._variant:
                self._variant, self._latencies, self._failed = event.variant_id, [], 0
            if isinstance(event, Result):
                self._latencies.append(event.local_ms)
            else:
                self._failed += 1
            frames = len(self._latencies) + self._failed
            if frames < self._window:
                return
            latencies, failed = sorted(self._latencies), self._failed
            self._latencies, self._failed = [], 0
            self.observed += 1
        median = latencies[len(latencies) // 2] if latencies else None
        self._observer.observe(m.ProbationMetrics(frames, failed / frames, median))


class OtaComponent:
    """Starts the update loop, with desired states pushed over MQTT (when there is a broker)
    as well as pulled over gRPC."""

    name = "ota"

    def __init__(self, service: OtaService, mqtt: AgentMqttClient | None) -> None:
        self.service, self.mqtt = service, mqtt

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.on_desired(self.service.submit)
        self.service.start()

    def stop(self) -> None:
        self.service.stop()
