"""UpdateService (devices, mutual TLS) — thin: signed metadata, artifacts, benchmarks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc

from controller.artifacts import ArtifactNotFound, ArtifactStore
from controller.grpc.auth import current_device
from controller.services.artifact_traffic import ArtifactTraffic
from controller.services.model_bench import DeviceBenchmarks
from controller.services.model_views import BenchResult
from controller.services.releases import Releases
from controller.signing.errors import MetadataNotFound
from edgefleet.errors import FailedPrecondition, InvalidInput, NotFound
from edgefleet.v1 import updates_pb2, updates_pb2_grpc

log = logging.getLogger(__name__)
CHUNK_BYTES = 256 * 1024
NO_URLS = "no presigned URLs from this store"


class UpdateServicer(updates_pb2_grpc.UpdateServiceServicer):
    def __init__(
        self,
        models: DeviceBenchmarks,
        releases: Releases,
        store: ArtifactStore,
        threads_of: dict[str, int],
        *,
        url_lifetime_s: int = 0,
        traffic: ArtifactTraffic | None = None,
    ) -> None:
        self._models, self._releases, self._store = models, releases, store
        self._threads_of = threads_of
        self._url_lifetime_s = url_lifetime_s  # 0: GetArtifactUrl always FAILED_PRECONDITION
        self.traffic = traffic or ArtifactTraffic()

    def GetMetadata(
        self, request: updates_pb2.GetMetadataRequest, context: grpc.ServicerContext
    ) -> updates_pb2.GetMetadataResponse:
        try:
            return updates_pb2.GetMetadataResponse(data=self._releases.metadata_file(request.name))
        except MetadataNotFound as exc:
            raise NotFound(str(exc)) from exc

    def _digest(
        self, request: updates_pb2.DownloadArtifactRequest | updates_pb2.GetArtifactUrlRequest
    ) -> str:
        """The artifact a device may fetch: a TUF target, or a variant's artifact by digest
        (never a source model, a data set or anything else in the store)."""
        if request.target_path:
            target = self._releases.targets().get(request.target_path)
            if target is None:
                raise NotFound(f"no target {request.target_path}")
            return str(target.hashes["sha256"])
        if not self._models.is_variant_artifact(request.sha256):
            raise NotFound(f"no variant artifact {request.sha256}")
        return request.sha256

    def DownloadArtifact(
        self, request: updates_pb2.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[updates_pb2.ArtifactChunk]:
        digest = self._digest(request)
        try:
            total = self._store.size(digest)
        except ArtifactNotFound as exc:
            raise NotFound(f"artifact {digest} is missing from the store") from exc
        if request.offset < 0 or request.offset > total:
            raise InvalidInput(f"offset {request.offset} outside 0..{total}")
        offset = request.offset
        self.traffic.stream_started()
        while offset < total:
            data = self._store.read_range(digest, offset, min(CHUNK_BYTES, total - offset))
            if not data:
                break
            self.traffic.streamed(len(data))
            yield updates_pb2.ArtifactChunk(data=data, offset=offset, total_size=total)
            offset += len(data)

    def GetArtifactUrl(
        self, request: updates_pb2.GetArtifactUrlRequest, context: grpc.ServicerContext
    ) -> updates_pb2.GetArtifactUrlResponse:
        digest = self._digest(request)  # the same artifacts DownloadArtifact serves
        if self._url_lifetime_s <= 0:
            raise FailedPrecondition(f"{NO_URLS} (artifact_url_lifetime_s = 0)")
        try:
            size = self._store.size(digest)
            url = self._store.presigned_url(digest, self._url_lifetime_s)
        except ArtifactNotFound as exc:
            raise NotFound(f"artifact {digest} is missing from the store") from exc
        if url is None:
            raise FailedPrecondition(NO_URLS)
        self.traffic.url_issued()
        expires_ms = int((time.time() + self._url_lifetime_s) * 1000)
        log.debug("presigned URL for artifact %s, valid %d s", digest, self._url_lifetime_s)
        return updates_pb2.GetArtifactUrlResponse(
            url=url, expires_unix_ms=expires_ms, size=size, sha256=digest
        )

    def ListBenchCandidates(
        self, request: updates_pb2.ListBenchCandidatesRequest, context: grpc.ServicerContext
    ) -> updates_pb2.ListBenchCandidatesResponse:
        device = current_device()
        out = updates_pb2.ListBenchCandidatesResponse(
            profile=device.profile, threads=self._threads_of.get(device.profile, 1)
        )
        for c in self._models.bench_candidates(device.profile, request.model):
            out.candidates.add(
                variant_id=c.variant_id,
                model=c.model,
                version=c.version,
                variant=c.variant,
                runtime=c.runtime,
                precision=c.precision,
                target_path=c.target_path,
                sha256=c.sha256,
                size=c.size,
            )
        return out

    def ReportBenchmarks(
        self, request: updates_pb2.ReportBenchmarksRequest, context: grpc.ServicerContext
    ) -> updates_pb2.ReportBenchmarksResponse:
        device = current_device()
        results = [
            BenchResult(r.variant_id, r.ok, r.latency_median_ms, r.latency_p95_ms, r.error)
            for r in request.results
        ]
        # DeviceBenchmarks checks the values (finite, in range) and bounds reports per device
        reselected = self._models.record_benchmarks(device.device_id, device.profile, results)
        return updates_pb2.ReportBenchmarksResponse(accepted=len(results), reselected=reselected)
