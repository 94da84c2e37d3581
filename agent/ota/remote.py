"""The agent's network edges for OTA: desired state and reports (DesiredStateService),
artifact chunks and TUF metadata (UpdateService). Every call has a deadline."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc

from agent.ota.machine import TargetInfo
from edgefleet.errors import NotFound, Unavailable
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc, updates_pb2, updates_pb2_grpc

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
    """Artifact chunks (resumable at an offset) and TUF metadata over ``UpdateService``."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = 30.0) -> None:
        self._stub = updates_pb2_grpc.UpdateServiceStub(channel)
        self._timeout = timeout_s

    def chunks(self, target: TargetInfo, offset: int) -> Iterator[bytes]:
        """Stream ``target`` from ``offset``; the deadline covers the whole stream."""
        request = updates_pb2.DownloadArtifactRequest(target_path=target.path, offset=offset)
        try:
            expected = offset
            for chunk in self._stub.DownloadArtifact(request, timeout=self._timeout):
                if chunk.offset != expected:
                    raise Unavailable(f"chunk at offset {chunk.offset}, expected {expected}")
                expected += len(chunk.data)
                yield chunk.data
        except grpc.RpcError as exc:
            raise _unavailable(f"download of {target.path}", exc) from exc

    def transport(self, path: str) -> bytes:
        """``edgefleet.updates.Transport`` for metadata ("metadata/<name>")."""
        prefix = "metadata/"
        if not path.startswith(prefix):
            raise NotFound(f"{path}: only metadata travels through this transport")
        try:
            r = self._stub.GetMetadata(
                updates_pb2.GetMetadataRequest(name=path[len(prefix) :]), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(path) from exc
            raise _unavailable(f"metadata {path}", exc) from exc
        return bytes(r.data)
