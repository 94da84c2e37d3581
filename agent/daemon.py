"""The agent's long-running process: a list of components, each started and stopped in turn.

Components: gRPC heartbeats, MQTT presence, and, when a model is given, the inference loop
and the telemetry publisher. More components (the OTA updater) are added to
``AgentDaemon.components`` before ``run()``; a component that installs a new model calls
``AgentDaemon.on_model_update(variant_dir)``, which loads it fully and then swaps it in
(frames in flight finish on the old model; none are dropped).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.components import Component, HeartbeatComponent, InferenceComponent
from agent.controller_client import ControllerClient, device_channel
from agent.identity import Credentials, Identity
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from edgefleet import __version__
from edgefleet.profiles import builtin_threads

if TYPE_CHECKING:
    from agent.runtime.model import ModelHolder
    from agent.telemetry.aggregator import TelemetryAggregator

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 3


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    heartbeat_interval_s: float = 5.0
    rpc_timeout_s: float = 5.0
    max_message_bytes: int = 8 * 1024 * 1024
    mqtt_enabled: bool = True
    mqtt_url: str = ""  # override the broker from enrollment ("" = as enrolled)
    # inference (only when model_dir is set)
    model_dir: Path | None = None
    source: str = ""
    offload_threshold: float | None = None  # fixed threshold ...
    offload_budget: float | None = None  # ... or a target fraction of frames (default 0.2)
    confidence: str = "max_softmax"
    audit_rate: float = 0.02
    offload_deadline_s: float = 0.5
    max_in_flight: int = 8
    telemetry_interval_s: float = 10.0
    spool_max_reports: int = 1000
    fps: float = 0.0
    skip_threshold: float | None = None
    loop: bool = False
    threads: int | None = None
    results_file: Path | None = None  # JSON lines of every answer (frame id, label, source)


class AgentDaemon:
    def __init__(self, config: AgentConfig) -> None:
        self.identity = Identity.load(config.data_dir)
        if config.threads is None:  # the thread count the device's profile is built for
            config = dataclasses.replace(config, threads=builtin_threads(self.identity.profile))
        self.config = config
        self.credentials = Credentials.load(config.data_dir)
        self.stopping = threading.Event()
        self.components: list[Component] = []
        self.refused: str | None = None
        self.mqtt: AgentMqttClient | None = None
        self.holder: ModelHolder | None = None  # once a model runs
        self.telemetry: TelemetryAggregator | None = None
        self.inference: InferenceComponent | None = None
        self._late: list[Component] = []  # started while running (the first OTA model)

    # -- assembly -------------------------------------------------------------------------------
    def build(self) -> None:
        """Create the standard components (idempotent; `run()` calls it)."""
        if self.components:
            return
        cfg, ident = self.config, self.identity
        channel = device_channel(ident.controller, self.credentials, cfg.max_message_bytes)
        self._channel = channel
        self.components.append(
            HeartbeatComponent(
                ControllerClient(channel, timeout_s=cfg.rpc_timeout_s),
                cfg.heartbeat_interval_s,
                self._refused,
            )
        )
        if cfg.mqtt_enabled:
            self.mqtt = AgentMqttClient(
                AgentMqttConfig(
                    url=cfg.mqtt_url or ident.mqtt_url,
                    device_id=ident.device_id,
                    username=ident.mqtt_username,
                    password=ident.mqtt_password,
                    heartbeat_interval_s=cfg.heartbeat_interval_s,
                    agent_version=__version__,
                )
            )
            self.components.append(_MqttComponent(self.mqtt))
        if cfg.model_dir is not None:
            from agent.inference_setup import build_inference

            parts = build_inference(cfg, ident.device_id, channel, self.mqtt)
            self.holder, self.telemetry = parts.holder, parts.telemetry
            self.inference = parts.inference
            self.components.extend(parts.components)

    def on_model_update(self, variant_dir: str | Path) -> str:
        """Load a variant and make it the active model; returns its variant id."""
        if self.holder is None:
            return self._start_first_model(Path(variant_dir))
        from agent.runtime.model import load_variant

        model = load_variant(variant_dir, self.config.threads)
        self.holder.swap(model)
        meta = model.metadata
        if self.telemetry is not None:
            self.telemetry.set_model(meta.model, meta.variant_id)
        if self.mqtt is not None:
            self.mqtt.set_active_variant(meta.variant_id)
        log.info("model swapped to %s", meta.variant_id)
        return meta.variant_id

    def _start_first_model(self, variant_dir: Path) -> str:
        """A device that had no model got one (OTA): start the inference side now."""
        from agent.inference_setup import build_inference

        cfg = dataclasses.replace(self.config, model_dir=variant_dir)
        parts = build_inference(cfg, self.identity.device_id, self._channel, self.mqtt)
        self.holder, self.telemetry = parts.holder, parts.telemetry
        self.inference = parts.inference
        for component in parts.components:
            component.start()
            self._late.append(component)
        variant_id = parts.holder.current().metadata.variant_id
        log.info("first model %s running", variant_id)
        return variant_id

    def _refused(self, reason: str) -> None:
        log.error("%s; stopping", reason)
        self.refused = reason
        self.stopping.set()

    # -- running --------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until ``stopping`` is set or the controller refuses us; returns an exit code."""
        ident = self.identity
        log.info(
            "agent %s (profile %s) connecting to %s",
            ident.device_id,
            ident.profile,
            ident.controller,
        )
        self.build()
        started: list[Component] = []
        try:
            for component in self.components:
                component.start()
                started.append(component)
            self.stopping.wait()
            return EXIT_REFUSED if self.refused else EXIT_OK
        finally:
            for component in reversed([*started, *self._late]):
                try:
                    component.stop()
                except Exception:
                    log.exception("stopping %s failed", component.name)
            self._channel.close()


class _MqttComponent:
    name = "mqtt"

    def __init__(self, client: AgentMqttClient) -> None:
        self.client = client

    def start(self) -> None:
        self.client.start()

    def stop(self) -> None:
        self.client.stop()
