"""``/metrics`` families of artifact downloads: bytes the controller streamed (DownloadArtifact)
and presigned URLs it handed out instead (GetArtifactUrl), cumulative since start."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily

from controller.services.artifact_traffic import ArtifactTraffic


def artifact_families(traffic: ArtifactTraffic) -> Callable[[], Iterator[CounterMetricFamily]]:
    def families() -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "edgefleet_artifact_streamed_bytes",
            "Artifact bytes the controller streamed to devices over gRPC",
            value=traffic.streamed_bytes,
        )
        yield CounterMetricFamily(
            "edgefleet_artifact_streams", "Artifact download streams started", value=traffic.streams
        )
        yield CounterMetricFamily(
            "edgefleet_artifact_urls_issued",
            "Presigned artifact URLs handed to devices (bytes fetched from the store directly)",
            value=traffic.urls_issued,
        )

    return families
