"""Wires inference into the Controller: cloud models + OffloadService (devices, mutual TLS),
the telemetry store fed by MQTT, and FleetAdminService (operators).

Called from Controller.start()/stop(); sets ``controller.telemetry`` (TelemetryStore),
``controller.cloud_models`` (CloudModels) and ``controller.offload_pairs`` (OffloadPairs).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from controller.config import ControllerConfig
from controller.grpc.auth import current_device
from controller.grpc.fleet_servicer import FleetAdminServicer
from controller.grpc.offload_servicer import OffloadServicer
from controller.services.offload import (
    BatchingConfig,
    CloudModels,
    HardExampleStore,
    OffloadPairs,
    RecordingModels,
    parse_cloud_model_spec,
)
from controller.services.telemetry import TelemetryStore, TelemetryStoreConfig
from edgefleet.v1 import fleet_pb2_grpc, inference_pb2_grpc

log = logging.getLogger(__name__)


def batching_defaults(cfg: ControllerConfig) -> BatchingConfig:
    return BatchingConfig(
        max_batch_size=cfg.offload_max_batch_size,
        max_queue_delay_ms=cfg.offload_max_queue_delay_ms,
        max_queue_size=cfg.offload_max_queue_size,
    )


def start_inference(controller: Any) -> None:
    cfg: ControllerConfig = controller.config
    controller.telemetry = TelemetryStore(
        controller.db,
        TelemetryStoreConfig(
            raw_retention_s=cfg.telemetry_raw_retention_s,
            rollup_retention_s=cfg.telemetry_rollup_retention_s,
        ),
    )
    controller.telemetry.start()
    defaults = batching_defaults(cfg)
    specs = [parse_cloud_model_spec(text, defaults) for text in cfg.cloud_models]
    # The model registry may land on the controller later (controller.models); look it up lazily.
    controller.cloud_models = CloudModels(
        specs, defaults, registry=lambda: getattr(controller, "models", None)
    )
    controller.cloud_models.preload()
    controller.offload_pairs = OffloadPairs()
    controller.hard_examples = None
    if cfg.hard_examples_max_bytes > 0:
        controller.hard_examples = HardExampleStore(
            cfg.hard_examples_max_bytes,
            directory=cfg.data_dir / "hard-examples",
        )


def register_inference(controller: Any, server: grpc.Server) -> None:
    models = controller.cloud_models
    if controller.hard_examples is not None:
        parts = getattr(controller, "model_parts", None)  # the artifact store, when it exists
        controller.hard_examples.artifacts = getattr(parts, "store", None)
        models = RecordingModels(
            models, controller.hard_examples, lambda: current_device().device_id
        )
    inference_pb2_grpc.add_OffloadServiceServicer_to_server(
        OffloadServicer(
            models,
            identify=lambda _ctx: current_device().device_id,
            on_pair=controller.offload_pairs.record,
        ),
        server,
    )
    fleet_pb2_grpc.add_FleetAdminServiceServicer_to_server(
        FleetAdminServicer(controller.registry, controller.telemetry, controller.offload_pairs),
        server,
    )


def stop_inference(controller: Any) -> None:
    if (models := getattr(controller, "cloud_models", None)) is not None:
        models.close()
    if (store := getattr(controller, "telemetry", None)) is not None:
        store.stop()
