"""Builds the inference side of the daemon: model, policy, offload client, telemetry."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from agent.components import Component, InferenceComponent
from agent.inference.agent import Agent
from agent.inference.agent import AgentConfig as InferenceConfig
from agent.inference.offload import GrpcOffloadClient
from agent.inference.policy import BudgetPolicy, FixedThreshold, OffloadPolicy
from agent.mqtt.client import AgentMqttClient
from agent.runtime.model import ModelHolder, load_variant
from agent.runtime.skipper import FrameSkipper
from agent.runtime.sources import open_source
from agent.telemetry.aggregator import TelemetryAggregator
from agent.telemetry.publisher import TelemetryPublisher
from agent.telemetry.spool import DiskSpool

if TYPE_CHECKING:
    from agent.daemon import AgentConfig

DEFAULT_BUDGET = 0.2


@dataclass
class InferenceParts:
    holder: ModelHolder
    telemetry: TelemetryAggregator
    inference: InferenceComponent | None
    publisher: TelemetryPublisher
    components: list[Component]


class ResultWriter:
    """Appends each Result as one JSON line (flushed, so readers see whole lines)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def __call__(self, result: object) -> None:
        self._file.write(json.dumps(dataclasses.asdict(result)) + "\n")  # type: ignore[call-overload]
        self._file.flush()


def make_policy(
    threshold: float | None,
    budget: float | None,
    typical_confidences: Sequence[float] = (),
) -> OffloadPolicy:
    """A fixed threshold, or a budget primed with the variant's validation confidences."""
    if threshold is not None and budget is not None:
        raise ValueError("give an offload threshold or an offload budget, not both")
    if threshold is not None:
        return FixedThreshold(threshold)
    policy = BudgetPolicy(target_fraction=DEFAULT_BUDGET if budget is None else budget)
    policy.prime(typical_confidences)
    return policy


def build_inference(
    cfg: AgentConfig, device_id: str, channel: grpc.Channel, mqtt: AgentMqttClient | None
) -> InferenceParts:
    assert cfg.model_dir is not None
    holder = ModelHolder(load_variant(cfg.model_dir, cfg.threads))
    meta = holder.current().metadata
    telemetry = TelemetryAggregator(device_id, meta.model, meta.variant_id)
    if mqtt is not None:
        mqtt.set_active_variant(meta.variant_id)
    agent = Agent(
        holder,
        make_policy(
            cfg.offload_threshold,
            cfg.offload_budget,
            meta.extra.get("confidence_quantiles", {}).get(cfg.confidence, ()),
        ),
        GrpcOffloadClient(channel),
        telemetry,
        InferenceConfig(
            offload_deadline_s=cfg.offload_deadline_s,
            max_in_flight=cfg.max_in_flight,
            audit_fraction=cfg.audit_rate,
            confidence_metric=cfg.confidence,
        ),
    )
    publisher = TelemetryPublisher(
        telemetry,
        DiskSpool(cfg.data_dir / "telemetry-spool", cfg.spool_max_reports),
        mqtt,
        interval_s=cfg.telemetry_interval_s,
    )
    components: list[Component] = [publisher]
    inference = None
    if cfg.source:
        inference = InferenceComponent(
            agent,
            open_source(cfg.source),
            telemetry,
            fps=cfg.fps,
            loop=cfg.loop,
            skipper=FrameSkipper(cfg.skip_threshold) if cfg.skip_threshold is not None else None,
        )
        if cfg.results_file is not None:
            inference.on_result = ResultWriter(cfg.results_file)
        components.append(inference)
    return InferenceParts(holder, telemetry, inference, publisher, components)
