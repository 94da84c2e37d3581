"""The one place the agent is put together: ``build_agent(config)`` constructs every
component from the typed config, in order — identity, controller channel, MQTT, the active
model and telemetry, OTA, inference, heartbeats — each getting its collaborators as
constructor arguments; ``DeviceAgent.start()`` starts them in that order and ``stop()``
stops them in reverse, under one exit stack. The CLI, the tests and the benchmarks all run
this wiring.

    agent = build_agent(AgentConfig(data_dir, ota=OtaSettings(), source="camera:0"))
    with agent:               # or agent.run(): until stopping is set or the device is refused
        ...

``build_ota_service`` is the OTA part alone (for tests that drive updates by hand).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc

from agent.components import (
    Component,
    HeartbeatComponent,
    InferenceComponent,
    MqttComponent,
    TelemetryComponent,
)
from agent.config import AgentConfig, OtaSettings
from agent.controller_client import ControllerClient, device_channel
from agent.identity import Credentials, Identity
from agent.inference.active import ActiveModel
from agent.inference.agent import Agent, InferenceListener
from agent.inference.agent import AgentConfig as LoopConfig
from agent.inference.drift import drift_baseline_follows, drift_budget_follows
from agent.inference.offload import GrpcOffloadClient
from agent.inference.policy import BudgetPolicy, OffloadPolicy, audit_rate_follows, make_policy
from agent.inference.results import ResultWriter
from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from agent.ota import machine as m
from agent.ota.artifact_urls import UrlDownloader, UrlSettings
from agent.ota.component import OtaComponent, ProbationFeed, onnx_smoke_test
from agent.ota.remote import DesiredStateClient, UpdateServiceSource
from agent.ota.service import OtaConfig, OtaService
from agent.ota.slots import SlotStore, Writer, write_all
from agent.ota.verify import TufVerifier
from agent.runtime.model import LoadedModel
from agent.runtime.skipper import FrameSkipper
from agent.runtime.sources import open_source
from agent.telemetry.aggregator import TelemetryAggregator
from agent.telemetry.publisher import TelemetryPublisher
from agent.telemetry.spool import DiskSpool
from edgefleet import __version__
from edgefleet.profiles import builtin_threads

__all__ = [
    "EXIT_OK", "EXIT_REFUSED", "AgentConfig", "DeviceAgent", "OtaSettings", "UpdateSource",
    "build_agent", "build_inference", "build_ota_service",
]  # fmt: skip

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 3


class UpdateSource(Protocol):
    """Artifact chunks and TUF metadata files from the controller (UpdateServiceSource)."""

    def chunks(self, target: m.TargetInfo, offset: int) -> Iterator[bytes]: ...

    def transport(self, path: str) -> bytes: ...


UpdateSourceFactory = Callable[[grpc.Channel, float], UpdateSource]


@dataclass
class StopSignal:
    """Set when the agent should stop; ``refused`` says why when the controller refused it."""

    event: threading.Event = field(default_factory=threading.Event)
    refused: str | None = None

    def refuse(self, reason: str) -> None:
        log.error("%s; stopping", reason)
        self.refused = reason
        self.event.set()


@dataclass
class DeviceAgent:
    """Every part of a running agent; ``components`` in start order."""

    config: AgentConfig
    identity: Identity
    channel: grpc.Channel
    mqtt: AgentMqttClient | None
    model: ActiveModel
    telemetry: TelemetryAggregator | None
    publisher: TelemetryComponent | None
    ota: OtaComponent | None
    inference: InferenceComponent | None
    heartbeat: HeartbeatComponent
    components: list[Component]
    stop_signal: StopSignal
    _stack: contextlib.ExitStack

    @property
    def stopping(self) -> threading.Event:
        return self.stop_signal.event

    def start(self) -> None:
        """Start every component in order (stopping those started if one fails)."""
        with contextlib.ExitStack() as started:
            for component in self.components:
                component.start()
                started.callback(_stop_quietly, component)
            self._stack.push(started.pop_all())

    def stop(self) -> None:
        """Stop the components in reverse order, then close the channel (idempotent)."""
        self._stack.close()

    def __enter__(self) -> DeviceAgent:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    def run(self) -> int:
        """Serve until ``stopping`` is set or the controller refuses us; returns an exit code."""
        ident = self.identity
        log.info("agent %s (profile %s) connecting to %s", ident.device_id, ident.profile,
                 ident.controller)  # fmt: skip
        with self:
            self.stopping.wait()
        return EXIT_REFUSED if self.stop_signal.refused else EXIT_OK


def _stop_quietly(component: Component) -> None:
    try:
        component.stop()
    except Exception:
        log.exception("stopping %s failed", component.name)


def build_agent(
    config: AgentConfig,
    *,
    listeners: Sequence[InferenceListener] = (),
    update_source: UpdateSourceFactory | None = None,
) -> DeviceAgent:
    """Construct (not start) the agent for ``config``. ``listeners`` hear every inference
    event besides the results writer and the probation feed; ``update_source`` replaces
    the artifact/metadata source (e.g. to count bytes)."""
    with contextlib.ExitStack() as stack:
        # identity and the controller channel
        identity = Identity.load(config.data_dir)
        threads = config.threads or builtin_threads(identity.profile)
        channel = device_channel(
            identity.controller, Credentials.load(config.data_dir), config.max_message_bytes
        )
        stack.callback(channel.close)
        stop = StopSignal()
        components: list[Component] = []
        # MQTT presence (heartbeats, retained desired state)
        mqtt = _mqtt(config, identity) if config.mqtt_enabled else None
        if mqtt is not None:
            components.append(MqttComponent(mqtt))
        # the active model and telemetry (only where a model runs, or may arrive over the air)
        model = ActiveModel(threads)
        telemetry, publishing = None, None
        if config.model_dir is not None or config.ota is not None:
            telemetry = TelemetryAggregator(identity.device_id)
            model.listeners.append(_telemetry_follows(telemetry))
            spool = DiskSpool(config.data_dir / "telemetry-spool", config.spool_max_reports)
            publisher = TelemetryPublisher(
                telemetry, spool, mqtt, interval_s=config.telemetry_interval_s
            )
            publishing = TelemetryComponent(publisher, model)
            components.append(publishing)
        if mqtt is not None:
            model.listeners.append(lambda loaded: mqtt.set_active_variant(loaded.variant_id))
        # OTA: recover the last verified slot before anything loads a model
        ota, model_dir, settings = None, config.model_dir, config.ota
        if settings is not None:
            service = build_ota_service(
                config, identity, channel, on_model_update=model.load, threads=threads,
                update_source=update_source,
            )  # fmt: skip
            installed = service.recover()
            model_dir = model_dir or installed
            ota = OtaComponent(service, mqtt)
            components.append(ota)
        # inference: the model, the offload policy, the frame loop and its listeners
        fan_out = list(listeners)
        if ota is not None and settings is not None:
            fan_out.append(ProbationFeed(ota.service, settings.probation_window))
        inference = None
        if config.source and telemetry is not None:
            inference = build_inference(
                config, model, telemetry, channel, fan_out, stack, mqtt=mqtt
            )
            components.append(inference)
        if model_dir is not None:
            model.load(model_dir)
        # gRPC heartbeats; a refusal (revoked device) stops the agent
        heartbeat = HeartbeatComponent(
            ControllerClient(channel, timeout_s=config.rpc_timeout_s),
            config.heartbeat_interval_s,
            stop.refuse,
        )
        components.append(heartbeat)
        return DeviceAgent(
            config, identity, channel, mqtt, model, telemetry, publishing, ota, inference,
            heartbeat, components, stop, stack.pop_all(),
        )  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def build_inference(
    config: AgentConfig,
    model: ActiveModel,
    telemetry: TelemetryAggregator,
    channel: grpc.Channel,
    listeners: Sequence[InferenceListener],
    stack: contextlib.ExitStack,
    mqtt: AgentMqttClient | None = None,
) -> InferenceComponent:
    """The inference part of ``build_agent`` (``config.source`` must be set): offload policy
    (primed by the first model, its drift baseline from every model, its drift budget from
    the desired state on ``mqtt``), the loop offloading hard frames over ``channel``, and the
    ``--results`` writer (closed by ``stack``) after ``listeners``."""
    policy = make_policy(
        config.offload_threshold, config.offload_budget, config.offload_shift_budget
    )
    model.listeners.append(_primes_once(policy, config.confidence))
    if isinstance(policy, BudgetPolicy):
        model.listeners.append(drift_baseline_follows(policy, config.confidence))
        if mqtt is not None:
            mqtt.on_desired(drift_budget_follows(policy))
    fan_out = list(listeners)
    if config.results_file is not None:
        writer = ResultWriter(config.results_file)
        stack.callback(writer.close)
        fan_out.append(writer)
    loop_config = LoopConfig(
        offload_deadline_s=config.offload_deadline_s,
        max_in_flight=config.max_in_flight,
        audit_fraction=config.audit_rate,
        seed=config.audit_seed,
        confidence_metric=config.confidence,
    )
    agent = Agent(model, policy, GrpcOffloadClient(channel), telemetry, loop_config)
    if mqtt is not None:
        mqtt.on_desired(audit_rate_follows(agent.audit))
    skipper = FrameSkipper(config.skip_threshold) if config.skip_threshold is not None else None
    return InferenceComponent(
        agent, model, open_source(config.source), telemetry, fps=config.fps, loop=config.loop,
        skipper=skipper, listeners=fan_out,
    )  # fmt: skip


def build_ota_service(
    config: AgentConfig,
    identity: Identity,
    channel: grpc.Channel,
    *,
    on_model_update: Callable[[Path], object] = lambda _p: None,
    threads: int | None = None,
    slot_writer: Writer = write_all,
    update_source: UpdateSourceFactory | None = None,
) -> OtaService:
    """The OTA service of ``build_agent`` on its own (``config.ota`` must be set): slot store
    in ``data_dir/ota``, TUF metadata in ``data_dir/tuf``, desired state and artifacts over
    ``channel``. ``slot_writer`` writes slot files (tests: a full disk, a slow one)."""
    settings = config.ota
    if settings is None:
        raise ValueError("build_ota_service needs config.ota")
    if update_source is not None:
        source = update_source(channel, settings.download_timeout_s)
    else:
        # artifacts over presigned URLs when the controller offers them (its stream if not)
        timeout, ca = settings.download_timeout_s, settings.artifact_url_ca_file
        urls = UrlDownloader(UrlSettings(timeout, ca_file=ca)) if settings.artifact_urls else None
        staging = config.data_dir / "ota-url"
        source = UpdateServiceSource(channel, timeout, urls=urls, staging_dir=staging)
    update = m.UpdateConfig(
        max_retries=settings.max_retries,
        backoff_base=settings.backoff_base_s,
        probation_seconds=settings.probation_s,
        max_error_rate=settings.max_error_rate,
        latency_budget_ms=config.probation_latency_budget_ms,
    )
    return OtaService(
        SlotStore(config.data_dir / "ota", write=slot_writer),
        desired=DesiredStateClient(channel, config.rpc_timeout_s),
        chunks=source.chunks,
        verifier=TufVerifier(config.data_dir / "tuf", source.transport, identity.profile),
        smoke_test=onnx_smoke_test(frames=settings.smoke_frames, threads=threads),
        on_model_update=on_model_update,
        config=OtaConfig(
            poll_interval_s=settings.poll_interval_s,
            tick_interval_s=settings.tick_interval_s,
            update=update,
        ),
    )


def _mqtt(config: AgentConfig, identity: Identity) -> AgentMqttClient:
    return AgentMqttClient(
        AgentMqttConfig(
            url=config.mqtt_url or identity.mqtt_url,
            device_id=identity.device_id,
            username=identity.mqtt_username,
            password=identity.mqtt_password,
            heartbeat_interval_s=config.heartbeat_interval_s,
            agent_version=__version__,
        )
    )


def _telemetry_follows(telemetry: TelemetryAggregator) -> Callable[[LoadedModel], None]:
    def follow(loaded: LoadedModel) -> None:
        telemetry.set_model(loaded.metadata.model, loaded.variant_id)

    return follow


def _primes_once(policy: OffloadPolicy, confidence: str) -> Callable[[LoadedModel], None]:
    """A budget policy starts from the first model's validation confidences."""
    primed = [not isinstance(policy, BudgetPolicy)]

    def prime(loaded: LoadedModel) -> None:
        if not primed[0] and isinstance(policy, BudgetPolicy):
            primed[0] = True
            quantiles = loaded.metadata.extra.get("confidence_quantiles", {})
            policy.prime(quantiles.get(confidence, ()))

    return prime
