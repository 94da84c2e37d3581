"""ModelAdminService's hard-example and retrain RPCs — thin: decode, call the hard-example store
or the retrainer, encode. A mixin of ModelAdminServicer (one servicer per gRPC service)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from controller.services.devices import DeviceRegistry, check_labels
from controller.services.hard_example_policy import (
    HardExamplePolicy,
    PolicyChange,
    StoredCounts,
)
from controller.services.hard_examples import HardExamples
from controller.services.model_retrain import Retrainer, RetrainRequest
from edgefleet.errors import FailedPrecondition
from edgefleet.v1 import models_pb2


@dataclass(frozen=True)
class FleetLoop:
    """What the hard-example and retrain RPCs need."""

    hard_examples: HardExamples
    retrainer: Retrainer
    devices: DeviceRegistry  # names given for a policy's devices are resolved to ids


def policy_to_proto(p: HardExamplePolicy) -> models_pb2.HardExamplePolicy:
    return models_pb2.HardExamplePolicy(
        model=p.model,
        enabled=p.enabled,
        max_bytes=p.max_bytes,
        retention_s=p.retention_s,
        device_ids=list(p.device_ids),
        device_labels=dict(p.device_labels),
        created_unix_ms=p.created_ms,
        updated_unix_ms=p.updated_ms,
    )


def counts_to_proto(c: StoredCounts) -> models_pb2.HardExampleCounts:
    return models_pb2.HardExampleCounts(
        frames=c.frames,
        bytes=c.bytes,
        oldest_unix_ms=c.oldest_ms,
        newest_unix_ms=c.newest_ms,
        dropped_cap=c.dropped_cap,
        dropped_retention=c.dropped_retention,
        dropped_busy=c.dropped_busy,
    )


def policy_change(
    request: models_pb2.SetHardExamplePolicyRequest, devices: DeviceRegistry
) -> PolicyChange:
    """The domain change; device names are resolved to ids (NotFound for an unknown one)."""
    ids = None
    if request.set_devices:
        ids = tuple(dict.fromkeys(devices.get(d.strip()).device_id for d in request.devices))
    labels = None
    if request.set_device_labels:
        labels = check_labels(dict(request.device_labels))
    return PolicyChange(
        enabled=request.enabled if request.HasField("enabled") else None,
        max_bytes=request.max_bytes if request.HasField("max_bytes") else None,
        retention_s=request.retention_s if request.HasField("retention_s") else None,
        device_ids=ids,
        device_labels=labels,
        purge=request.purge,
    )


class HardExampleRpcs:
    """Mixed into ModelAdminServicer, which sets ``_fleet_loop``."""

    _fleet_loop: FleetLoop | None = None

    def _loop(self) -> FleetLoop:
        if self._fleet_loop is None:
            raise FailedPrecondition("this controller keeps no hard examples")
        return self._fleet_loop

    def _policy_response(self, model: str) -> models_pb2.HardExamplePolicyResponse:
        store = self._loop().hard_examples
        return models_pb2.HardExamplePolicyResponse(
            policy=policy_to_proto(store.policy(model)),
            counts=counts_to_proto(store.counts(model)),
            ceiling_bytes=store.ceiling_bytes,
        )

    def GetHardExamplePolicy(
        self, request: models_pb2.GetHardExamplePolicyRequest, context: grpc.ServicerContext
    ) -> models_pb2.HardExamplePolicyResponse:
        return self._policy_response(request.model)

    def SetHardExamplePolicy(
        self, request: models_pb2.SetHardExamplePolicyRequest, context: grpc.ServicerContext
    ) -> models_pb2.HardExamplePolicyResponse:
        loop = self._loop()
        loop.hard_examples.set_policy(request.model, policy_change(request, loop.devices))
        return self._policy_response(request.model)

    def RetrainModel(
        self, request: models_pb2.RetrainModelRequest, context: grpc.ServicerContext
    ) -> Iterator[models_pb2.TrainingEvent]:
        from controller.grpc.models_servicer import _stream_training

        retrainer = self._loop().retrainer
        retrain = RetrainRequest(
            model=request.model,
            since_ms=request.since_unix_ms,
            data_sha256=request.data_sha256,
            epochs=request.epochs,
            max_seconds=request.max_seconds,
            batch_size=request.batch_size,
        )
        retrainer.check(retrain)  # bad input fails before streaming
        cancel = threading.Event()
        context.add_callback(cancel.set)  # the client went away (or the call ended)
        yield from _stream_training(
            lambda progress: retrainer.retrain(retrain, progress, cancel),
            cancel,
            retrain.max_seconds or 3600.0,
            f"retrain-{retrain.model}",
        )
