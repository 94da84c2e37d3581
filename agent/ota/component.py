"""Assemble the OTA component for the agent daemon from its identity and data directory.

ota = build_ota(data_dir, identity, credentials, on_model_update=daemon.on_model_update)
model_dir = ota.service.recover() or given_model_dir     # once per boot, before loading
ota.mqtt = daemon.mqtt                                    # retained desired state (optional)
daemon.components.append(ota)
inference.on_result = ProbationFeed(ota.service).on_result  # probation health per frame
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.ota import machine as m
from agent.ota.remote import DesiredStateClient, UpdateServiceSource
from agent.ota.service import OtaConfig, OtaService
from agent.ota.slots import SlotStore
from agent.ota.smoke import SmokeRun, make_smoke_test
from agent.ota.verify import TufVerifier

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


class ProbationFeed:
    """Turns inference results (anything with ``local_ms``) into probation health: every
    ``window`` frames, ``service.observe(ProbationMetrics(frames, 0.0, median latency))``.
    Inference errors are not results; a crashing model shows up as boot attempts instead."""

    def __init__(self, service: OtaService, window: int = 20) -> None:
        self._service, self._window = service, window
        self._latencies: list[float] = []

    def on_result(self, result: Any) -> None:
        self._latencies.append(float(getattr(result, "local_ms", 0.0)))
        if len(self._latencies) >= self._window:
            window, self._latencies = sorted(self._latencies), []
            median = window[len(window) // 2]
            self._service.observe(m.ProbationMetrics(len(window), 0.0, median))


class OtaComponent:
    name = "ota"

    def __init__(
        self, service: OtaService, mqtt: Any = None, close: Callable[[], object] | None = None
    ):
        self.service, self.mqtt, self._close = service, mqtt, close

    def start(self) -> None:
        if self.mqtt is not None:
            self.mqtt.on_desired(self.service.submit)
        self.service.start()

    def stop(self) -> None:
        self.service.stop()
        if self._close is not None:
            self._close()


def build_ota(
    data_dir: Path,
    identity: Any,
    credentials: Any,
    *,
    on_model_update: Callable[[Path], object],
    mqtt: Any = None,
    config: OtaConfig | None = None,
    rpc_timeout_s: float = 5.0,
    max_message_bytes: int = 8 * 1024 * 1024,
    smoke_test: Callable[[Path], None] | None = None,
) -> OtaComponent:
    from agent.controller_client import device_channel

    channel = device_channel(identity.controller, credentials, max_message_bytes)
    source = UpdateServiceSource(channel, timeout_s=max(30.0, rpc_timeout_s))
    service = OtaService(
        SlotStore(Path(data_dir) / "ota"),
        desired=DesiredStateClient(channel, rpc_timeout_s),
        chunks=source.chunks,
        verifier=TufVerifier(Path(data_dir) / "tuf", source.transport, identity.profile),
        smoke_test=smoke_test or onnx_smoke_test(),
        on_model_update=on_model_update,
        config=config,
    )
    return OtaComponent(service, mqtt, channel.close)
