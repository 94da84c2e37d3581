"""DesiredStateService (devices) and RolloutAdminService (operators): decode, call, encode."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import grpc

from controller.grpc.auth import current_device
from controller.services.rollout_store import Desired, StoredRollout
from controller.services.rollouts import RolloutService
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc


def summary_to_proto(r: StoredRollout) -> rollouts_pb2.RolloutSummary:
    return rollouts_pb2.RolloutSummary(
        rollout_id=r.rollout_id,
        model=r.spec.model,
        version=r.spec.version,
        phase=r.state.phase,
        stage=r.state.stage_index + 1,
        stages=len(r.spec.stages),
        devices=len(r.state.devices),
        healthy=r.state.count("healthy"),
        created_unix_ms=r.created_ms,
        updated_unix_ms=r.updated_ms,
    )


def desired_to_proto(d: Desired) -> rollouts_pb2.DesiredState:
    return rollouts_pb2.DesiredState(
        device_id=d.device_id,
        model=d.model,
        version=d.version,
        variant_id=d.variant_id,
        target_path=d.target_path,
        sha256=d.sha256,
        length=d.length,
        rollout_id=d.rollout_id,
        revision=d.revision,
        target_json=json.dumps(dict(d.target or {}), sort_keys=True),
    )


class DesiredStateServicer(rollouts_pb2_grpc.DesiredStateServiceServicer):
    def __init__(
        self, rollouts: RolloutService, offload_budget: Callable[[str], float] | None = None
    ) -> None:
        self._rollouts = rollouts
        self._offload_budget = offload_budget  # drift-aware offload (controller.monitoring)

    def GetDesiredState(
        self, request: rollouts_pb2.GetDesiredStateRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.GetDesiredStateResponse:
        device = current_device()
        if request.current_variant:
            self._rollouts.report(device.device_id, "", "", "", request.current_variant)
        desired = self._rollouts.desired_for(device.device_id)
        if desired is None:
            return rollouts_pb2.GetDesiredStateResponse(assigned=False)
        message = desired_to_proto(desired)
        if self._offload_budget is not None:
            message.offload_max_fps = self._offload_budget(device.device_id)
        return rollouts_pb2.GetDesiredStateResponse(assigned=True, desired=message)

    def ReportUpdateStatus(
        self, request: rollouts_pb2.ReportUpdateStatusRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.ReportUpdateStatusResponse:
        self._rollouts.report(
            current_device().device_id,
            request.state,
            request.variant_id,
            request.reason,
            request.current_variant,
            request.revision,
        )
        return rollouts_pb2.ReportUpdateStatusResponse()


class RolloutAdminServicer(rollouts_pb2_grpc.RolloutAdminServiceServicer):
    def __init__(self, rollouts: RolloutService) -> None:
        self._rollouts = rollouts

    def StartRollout(
        self, request: rollouts_pb2.StartRolloutRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.StartRolloutResponse:
        spec: dict[str, object] = {
            "model": request.model,
            "version": int(request.version),
            "selector": dict(request.selector),
            "target": request.target,
            "auto_rollback": not request.no_auto_rollback,
        }
        if request.stages:
            spec["stages"] = [float(s) for s in request.stages]
        if request.min_devices > 0:
            spec["min_devices"] = int(request.min_devices)
        if request.soak_seconds >= 0 and math.isfinite(request.soak_seconds):
            spec["soak_seconds"] = float(request.soak_seconds)
        if request.gates:
            spec["gates"] = list(request.gates)
        if request.max_concurrent_downloads > 0:
            spec["max_concurrent_downloads"] = int(request.max_concurrent_downloads)
        if request.min_samples > 0:
            spec["min_samples"] = int(request.min_samples)
        if request.install_failure_threshold > 0:
            spec["install_failure_threshold"] = float(request.install_failure_threshold)
        if request.gate_timeout_seconds > 0:
            spec["gate_timeout_seconds"] = float(request.gate_timeout_seconds)
        rollout = self._rollouts.start_rollout(spec)
        return rollouts_pb2.StartRolloutResponse(rollout=summary_to_proto(rollout))

    def ListRollouts(
        self, request: rollouts_pb2.ListRolloutsRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.ListRolloutsResponse:
        return rollouts_pb2.ListRolloutsResponse(
            rollouts=[summary_to_proto(r) for r in self._rollouts.rollouts()]
        )

    def GetRollout(
        self, request: rollouts_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.GetRolloutResponse:
        r = self._rollouts.get(request.rollout_id)
        events = self._rollouts.store.events(r.rollout_id)
        return rollouts_pb2.GetRolloutResponse(
            rollout=summary_to_proto(r),
            spec_json=json.dumps(r.spec.to_dict()),
            state_json=json.dumps(r.state.to_dict()),
            explanation=self._rollouts.explain(r),
            events=[
                rollouts_pb2.RolloutEvent(unix_ms=e.at_ms, level=e.level, message=e.message)
                for e in events
            ],
        )

    def RolloutCommand(
        self, request: rollouts_pb2.RolloutCommandRequest, context: grpc.ServicerContext
    ) -> rollouts_pb2.RolloutCommandResponse:
        r = self._rollouts.command(request.rollout_id, request.command, request.reason)
        return rollouts_pb2.RolloutCommandResponse(rollout=summary_to_proto(r))


def add_rollout_services(
    server: grpc.Server,
    rollouts: RolloutService,
    offload_budget: Callable[[str], float] | None = None,
) -> None:
    """Register both rollout services (one line in ``Controller.start``)."""
    rollouts_pb2_grpc.add_DesiredStateServiceServicer_to_server(
        DesiredStateServicer(rollouts, offload_budget), server
    )
    rollouts_pb2_grpc.add_RolloutAdminServiceServicer_to_server(
        RolloutAdminServicer(rollouts), server
    )
