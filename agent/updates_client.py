"""The agent's one client of the controller's UpdateService (mutual TLS): the OTA updater,
its TUF verifier (through the adapter ``agent.ota.remote.UpdateServiceSource``) and the
benchmark all use it.

    client = UpdateClient(device_channel(...), timeout_s=30)
    updater = TrustedUpdater(data_dir / "tuf", client.transport, bootstrap_root=root_bytes)
    target = updater.get_target(path, profile)          # verified metadata
    updater.download_target(target, dest)               # verified while streaming

``transport(path)`` maps TrustedUpdater's paths onto RPCs: ``metadata/<name>`` ->
``GetMetadata`` (``NotFound`` when absent, which python-tuf needs to stop walking roots) and
``targets/<dir>/<sha256>.<file>`` -> ``DownloadArtifact`` by digest, as an iterator of
chunks that resumes from the last received byte after a transient failure (bounded
retries, ``edgefleet.retry``). ``download(ref, dest, offset)`` writes an artifact (digest or
target path) to a file, resuming a partial file; it does not verify — do that against signed
metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import tenacity

from agent.controller_client import CALL_BACKOFF, transient
from agent.errors import AgentError, ControllerUnreachable
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.retry import last_error, retrying
from edgefleet.v1 import updates_pb2, updates_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")


class UpdateRefused(AgentError):
    """The controller refused an update call (not found, bad request, revoked device...)."""


class UpdatePreconditionFailed(UpdateRefused):
    """FAILED_PRECONDITION: e.g. no presigned artifact URLs from this controller's store."""


class UpdateClient:
    """Every call has a deadline (``timeout_s``, per attempt) and retries transient failures
    (``attempts`` tries, backoff from ``backoff_s`` doubling to 15 s, +-20% jitter)."""

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
        self._backoff = dataclasses.replace(CALL_BACKOFF, first_s=backoff_s)
        self._sleep = sleep

    # -- metadata ------------------------------------------------------------------------------
    def metadata(self, name: str) -> bytes:
        """Raw bytes of a TUF metadata file; ``NotFound`` when the controller has none."""
        response = self._unary(
            f"metadata {name}", self._stub.GetMetadata, updates_pb2.GetMetadataRequest(name=name)
        )
        return bytes(response.data)

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
        """Artifact bytes from ``offset`` on (``ref``: a sha256 or a target path); a broken
        stream resumes where it stopped, and every chunk received gives the stream its whole
        retry budget again."""
        request = (
            updates_pb2.DownloadArtifactRequest(target_path=ref)
            if "/" in ref
            else updates_pb2.DownloadArtifactRequest(sha256=ref)
        )
        position = offset

        def at_byte(exc: BaseException) -> str:
            return f"{_code_name(exc)} at byte {position}"

        try:
            for attempt in self._retrying(f"artifact {ref}", at_byte):
                with attempt:
                    request.offset = position
                    for chunk in self._stub.DownloadArtifact(request, timeout=self.timeout_s):
                        if chunk.offset != position:
                            raise UpdateRefused(
                                f"artifact chunk at {chunk.offset}, expected {position}"
                            )
                        position += len(chunk.data)
                        attempt.retry_state.attempt_number = 1  # progress: a fresh budget
                        yield bytes(chunk.data)
        except (tenacity.RetryError, grpc.RpcError) as exc:
            raise self._error(f"artifact {ref} at byte {position}", exc) from None

    def artifact_url(self, ref: str) -> updates_pb2.GetArtifactUrlResponse:
        """A presigned URL for artifact ``ref`` (sha256 or target path);
        ``UpdatePreconditionFailed`` when the controller's store gives none, ``NotFound``."""
        request = (
            updates_pb2.GetArtifactUrlRequest(target_path=ref)
            if "/" in ref
            else updates_pb2.GetArtifactUrlRequest(sha256=ref)
        )
        return self._unary(f"artifact URL {ref}", self._stub.GetArtifactUrl, request)

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
        request = updates_pb2.ListBenchCandidatesRequest(model=model)
        return self._unary("bench candidates", self._stub.ListBenchCandidates, request)

    def report_benchmarks(
        self, results: list[updates_pb2.BenchResult]
    ) -> updates_pb2.ReportBenchmarksResponse:
        request = updates_pb2.ReportBenchmarksRequest(results=results)
        return self._unary("benchmark report", self._stub.ReportBenchmarks, request)

    # -- retries -------------------------------------------------------------------------------
    def _retrying(
        self, what: str, describe: Callable[[BaseException], str] | None = None
    ) -> tenacity.Retrying:
        return retrying(
            what=what,
            transient=transient,
            attempts=self.attempts,
            backoff=self._backoff,
            describe=describe or _code_name,
            logger=log,
            sleep=self._sleep,
        )

    def _unary(self, what: str, rpc: Callable[..., T], request: object) -> T:
        """``rpc(request)``, this client's deadline on each attempt, transient failures retried."""
        try:
            return self._retrying(what)(lambda: rpc(request, timeout=self.timeout_s))
        except (tenacity.RetryError, grpc.RpcError) as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: tenacity.RetryError | grpc.RpcError) -> Exception:
        """Our error for a call that failed for good: gave up, absent, or refused."""
        if isinstance(exc, tenacity.RetryError):
            code = _code_name(last_error(exc))
            return ControllerUnreachable(
                f"{what}: controller unreachable after {self.attempts} attempts ({code})"
            )
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return NotFound(f"{what}: {exc.details()}")
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return UpdatePreconditionFailed(f"{what}: FAILED_PRECONDITION: {exc.details()}")
        return UpdateRefused(f"{what}: {exc.code().name}: {exc.details()}")


def _code_name(exc: BaseException) -> str:
    return exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
