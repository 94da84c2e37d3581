"""The agent's client of the controller's UpdateService (mutual TLS).

    client = UpdateClient(device_channel(...), timeout_s=30)
    updater = TrustedUpdater(data_dir / "tuf", client.transport, bootstrap_root=root_bytes)
    target = updater.get_target(path, profile)          # verified metadata
    updater.download_target(target, dest)               # verified while streaming

``transport(path)`` maps TrustedUpdater's paths onto RPCs: ``metadata/<name>`` ->
``GetMetadata`` (``NotFound`` when absent, which python-tuf needs to stop walking roots) and
``targets/<dir>/<sha256>.<file>`` -> ``DownloadArtifact`` by digest, as an iterator of
chunks that resumes from the last received byte after a transient failure (bounded
retries). ``download(ref, dest, offset)`` writes an artifact (digest or target path) to a
file, resuming a partial file; it does not verify — do that against signed metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from agent.controller_client import RETRYABLE
from agent.errors import AgentError, ControllerUnreachable
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.v1 import updates_pb2, updates_pb2_grpc

log = logging.getLogger(__name__)


class UpdateRefused(AgentError):
    """The controller refused an update call (not found, bad request, revoked device...)."""


class UpdateClient:
    def __init__(
        self,
        channel: grpc.Channel,
        timeout_s: float = 30.0,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stub = updates_pb2_grpc.UpdateServiceStub(channel)
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self._backoff_s, self._sleep = backoff_s, sleep

    # -- metadata ------------------------------------------------------------------------------
    def metadata(self, name: str) -> bytes:
        """Raw bytes of a TUF metadata file; ``NotFound`` when the controller has none."""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._stub.GetMetadata(
                    updates_pb2.GetMetadataRequest(name=name), timeout=self.timeout_s
                )
                return bytes(response.data)
            except grpc.RpcError as exc:
                self._handle(exc, f"metadata {name}", attempt)
        raise AssertionError("unreachable")

    def transport(self, path: str) -> bytes | Iterator[bytes]:
        """A ``edgefleet.updates.Transport`` over this client."""
        if path.startswith("metadata/"):
            return self.metadata(path[len("metadata/") :])
        if path.startswith("targets/"):
            name = path.rsplit("/", 1)[-1]
            digest = name.split(".", 1)[0]
            if len(digest) != 64:
                raise InvalidInput(f"target path {path} carries no sha256")
            return self.chunks(digest)
        raise NotFound(f"unknown update path {path}")

    # -- artifacts -----------------------------------------------------------------------------
    def chunks(self, ref: str, offset: int = 0) -> Iterator[bytes]:
        """Artifact bytes from ``offset`` on; a broken stream resumes where it stopped."""
        request = (
            updates_pb2.DownloadArtifactRequest(target_path=ref)
            if "/" in ref
            else updates_pb2.DownloadArtifactRequest(sha256=ref)
        )
        position, attempt = offset, 1
        while True:
            request.offset = position
            try:
                for chunk in self._stub.DownloadArtifact(request, timeout=self.timeout_s):
                    if chunk.offset != position:
                        raise UpdateRefused(
                            f"artifact chunk at {chunk.offset}, expected {position}"
                        )
                    position += len(chunk.data)
                    attempt = 1  # progress resets the retry budget
                    yield bytes(chunk.data)
                return
            except grpc.RpcError as exc:
                self._handle(exc, f"artifact {ref} at byte {position}", attempt)
                attempt += 1

    def download(self, ref: str, dest_path: str | Path, offset: int = 0) -> int:
        """Write artifact ``ref`` (sha256 or target path) into ``dest_path`` from ``offset``
        (keeping the file's first ``offset`` bytes). Returns the file's final size."""
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if offset and dest.exists() else "wb"
        if mode == "wb":
            offset = 0
        with dest.open(mode) as out:
            out.seek(offset)
            out.truncate()
            for data in self.chunks(ref, offset):
                out.write(data)
            return out.tell()

    # -- benchmarks ----------------------------------------------------------------------------
    def bench_candidates(self, model: str = "") -> updates_pb2.ListBenchCandidatesResponse:
        for attempt in range(1, self.attempts + 1):
            try:
                response: updates_pb2.ListBenchCandidatesResponse = self._stub.ListBenchCandidates(
                    updates_pb2.ListBenchCandidatesRequest(model=model), timeout=self.timeout_s
                )
                return response
            except grpc.RpcError as exc:
                self._handle(exc, "bench candidates", attempt)
        raise AssertionError("unreachable")

    def report_benchmarks(
        self, results: list[updates_pb2.BenchResult]
    ) -> updates_pb2.ReportBenchmarksResponse:
        for attempt in range(1, self.attempts + 1):
            try:
                response: updates_pb2.ReportBenchmarksResponse = self._stub.ReportBenchmarks(
                    updates_pb2.ReportBenchmarksRequest(results=results), timeout=self.timeout_s
                )
                return response
            except grpc.RpcError as exc:
                self._handle(exc, "benchmark report", attempt)
        raise AssertionError("unreachable")

    def _handle(self, exc: grpc.RpcError, what: str, attempt: int) -> None:
        """Sleep before a retry of a transient failure; raise for anything else."""
        code = exc.code()
        details = exc.details()
        if code == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"{what}: {details}") from None
        if code not in RETRYABLE:
            raise UpdateRefused(f"{what}: {code.name}: {details}") from None
        if attempt >= self.attempts:
            raise ControllerUnreachable(
                f"{what}: controller unreachable after {attempt} attempts ({code.name})"
            ) from None
        delay = self._backoff_s * 2 ** (attempt - 1)
        log.warning("%s: %s, retrying in %.1f s", what, code.name, delay)
        self._sleep(delay)
