"""The agent's network edges for OTA: desired state and reports (DesiredStateService), and
``UpdateServiceSource``, the updater's adapter over ``agent.updates_client.UpdateClient``
(artifact chunks and TUF metadata from UpdateService). Every call has a deadline."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc

from agent.ota.machine import TargetInfo
from agent.updates_client import UpdateClient
from edgefleet.errors import NotFound, Unavailable
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc

log = logging.getLogger(__name__)


def _unavailable(what: str, exc: grpc.RpcError) -> Unavailable:
    code = exc.code()
    return Unavailable(f"{what}: {code.name}: {exc.details()}")


def desired_from_proto(d: rollouts_pb2.DesiredState) -> dict[str, Any]:
    """The same dict the controller publishes over MQTT (``target`` may be garbage)."""
    try:
        target: Any = json.loads(d.target_json) if d.target_json else {}
    except ValueError:
        target = d.target_json
    return {
        "device_id": d.device_id, "model": d.model, "version": d.version,
        "variant_id": d.variant_id, "target_path": d.target_path, "sha256": d.sha256,
        "length": d.length, "rollout_id": d.rollout_id, "revision": d.revision,
        "target": target,
    }  # fmt: skip


class DesiredStateClient:
    def __init__(self, channel: grpc.Channel, timeout_s: float = 5.0) -> None:
        self._stub = rollouts_pb2_grpc.DesiredStateServiceStub(channel)
        self._timeout = timeout_s

    def get(self, current_variant: str | None) -> dict[str, Any] | None:
        try:
            r = self._stub.GetDesiredState(
                rollouts_pb2.GetDesiredStateRequest(current_variant=current_variant or ""),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            raise _unavailable("desired state", exc) from exc
        return desired_from_proto(r.desired) if r.assigned else None

    def report(
        self, state: str, variant_id: str | None, reason: str, current: str | None, revision: int
    ) -> None:
        try:
            self._stub.ReportUpdateStatus(
                rollouts_pb2.ReportUpdateStatusRequest(
                    state=state, variant_id=variant_id or "", reason=reason[:2000],
                    current_variant=current or "", revision=revision,
                ),
                timeout=self._timeout,
            )  # fmt: skip
        except grpc.RpcError as exc:
            raise _unavailable("update report", exc) from exc


class UpdateServiceSource:
    """The OTA updater's view of the one update-service client (``UpdateClient``: shared
    ``edgefleet.retry`` retries, streams resumed at their offset): chunks of a target, and
    TUF metadata files. An adapter only; every call goes through the client."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = 30.0, attempts: int = 4) -> None:
        self.client = UpdateClient(channel, timeout_s, attempts=attempts)

    def chunks(self, target: TargetInfo, offset: int) -> Iterator[bytes]:
        return self.client.chunks(target.path, offset)

    def transport(self, path: str) -> bytes:
        """``edgefleet.updates.Transport`` for metadata ("metadata/<name>")."""
        prefix = "metadata/"
        if not path.startswith(prefix):
            raise NotFound(f"{path}: only metadata travels through this transport")
        return self.client.metadata(path[len(prefix) :])
