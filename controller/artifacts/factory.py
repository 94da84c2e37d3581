"""Build an artifact store from a URL: ``/dir``, ``file:///dir`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from controller.artifacts.base import ArtifactStore
from controller.artifacts.errors import ArtifactStoreError
from controller.artifacts.local import LocalArtifactStore


def store_from_url(
    url: str,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    presign_endpoint_url: str | None = None,
) -> ArtifactStore:
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        if not path:
            raise ArtifactStoreError(f"artifact store URL has no path: {url!r}")
        return LocalArtifactStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ArtifactStoreError(f"artifact store URL has no bucket: {url!r}")
        from controller.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore(
            parsed.netloc,
            parsed.path.strip("/"),
            endpoint_url=endpoint_url,
            region=region,
            presign_endpoint_url=presign_endpoint_url,
        )
    raise ArtifactStoreError(f"unsupported artifact store URL scheme {parsed.scheme!r} in {url!r}")
