"""The agent's network edges for OTA: desired state and reports (DesiredStateService), and
``UpdateServiceSource``, the updater's adapter over ``agent.updates_client.UpdateClient``
(artifact chunks and TUF metadata from UpdateService). Every call has a deadline."""

from __future__ import annotations

import errno
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from agent.ota.artifact_urls import BLOCK, UrlDownloader
from agent.ota.errors import ArtifactUrlFailed
from agent.ota.machine import TargetInfo
from agent.updates_client import UpdateClient, UpdatePreconditionFailed
from edgefleet.errors import EdgeFleetError, NotFound, Unavailable
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


def _reason(exc: Exception) -> str:
    """A short, bounded label for the fallback counter (no URL, no digest in it)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    text = str(exc)
    if m := re.search(r"HTTP (\d{3})", text):
        return f"http_{m.group(1)}"
    if "bytes from the URL refused" in text:
        return "verification"
    if "unreachable" in text or isinstance(exc, OSError):
        return "unreachable"
    return "other"


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
    TUF metadata files. An adapter only; every call goes through the client.

    With ``urls`` (and ``staging_dir``), a download from byte 0 first asks for a presigned
    URL and fetches the bytes from the store into ``staging_dir``, checked against the signed
    length and sha256 before one is handed on (the updater then hashes and TUF-verifies them
    again as it would streamed ones); on any failure it falls back to the controller's stream,
    counted in ``url_stats``. A controller whose store gives no URLs is not asked again for
    ``URLS_OFF_S``."""

    URLS_OFF_S = 600.0

    def __init__(
        self,
        channel: grpc.Channel,
        timeout_s: float = 30.0,
        attempts: int = 4,
        *,
        urls: UrlDownloader | None = None,
        staging_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = UpdateClient(channel, timeout_s, attempts=attempts)
        if urls is not None and staging_dir is None:
            raise ValueError("presigned URL downloads need a staging_dir")
        self._urls, self._staging, self._clock = urls, staging_dir, clock
        self._urls_off_until = 0.0
        self.url_stats: Counter[str] = Counter()  # "url", "fallback", "fallback:<why>", "off"

    def chunks(self, target: TargetInfo, offset: int) -> Iterator[bytes]:
        staged = self._from_url(target) if offset == 0 else None
        if staged is None:
            yield from self.client.chunks(target.path, offset)
            return
        try:
            with staged.open("rb") as fh:
                while block := fh.read(BLOCK):
                    yield block
        finally:
            staged.unlink(missing_ok=True)

    def _from_url(self, target: TargetInfo) -> Path | None:
        """The verified bytes of ``target`` staged from a presigned URL, or None (fall back)."""
        if self._urls is None or self._staging is None or self._clock() < self._urls_off_until:
            return None
        try:
            answer = self.client.artifact_url(target.path)
        except UpdatePreconditionFailed as exc:  # this store gives no URLs (or they are off)
            self._urls_off_until = self._clock() + self.URLS_OFF_S
            self.url_stats["off"] += 1
            log.info("artifact %s over the controller's stream: %s", target.sha256, exc)
            return None
        except EdgeFleetError as exc:
            self._fallback(target, "no_url", exc)
            return None
        for stale in self._staging.glob("*.url"):  # a crash's leftovers: one download at a time
            stale.unlink(missing_ok=True)
        try:
            staged = self._urls.fetch(
                answer.url, target, self._staging / f"{target.sha256}.url",
                renew=lambda: self._renew(target),
            )  # fmt: skip
        except (ArtifactUrlFailed, OSError) as exc:
            self._fallback(target, _reason(exc), exc)
            return None
        self.url_stats["url"] += 1
        log.info("artifact %s (%d bytes) fetched over its presigned URL", target.sha256,
                 target.length)  # fmt: skip
        return staged

    def _renew(self, target: TargetInfo) -> str:
        """A fresh URL to resume with (the first one may have expired meanwhile)."""
        try:
            return self.client.artifact_url(target.path).url
        except EdgeFleetError as exc:
            raise ArtifactUrlFailed(f"no fresh URL to resume with: {exc}") from exc

    def _fallback(self, target: TargetInfo, why: str, exc: Exception) -> None:
        self.url_stats["fallback"] += 1
        self.url_stats[f"fallback:{why}"] += 1
        log.warning("artifact %s: presigned URL failed (%s), falling back to the controller's "
                    "stream", target.sha256, exc)  # fmt: skip

    def transport(self, path: str) -> bytes:
        """``edgefleet.updates.Transport`` for metadata ("metadata/<name>")."""
        prefix = "metadata/"
        if not path.startswith(prefix):
            raise NotFound(f"{path}: only metadata travels through this transport")
        return self.client.metadata(path[len(prefix) :])
