"""Content-addressed artifact store (model files keyed by sha256).

``ArtifactStore`` is the interface; ``LocalArtifactStore`` (default, a directory),
``S3ArtifactStore`` (boto3, imported lazily) and ``MemoryArtifactStore`` (tests) implement it.
``store_from_url`` picks one from ``/dir``, ``file:///dir`` or ``s3://bucket/prefix``.
"""

from controller.artifacts.base import ArtifactRef, ArtifactStore
from controller.artifacts.errors import (
    ArtifactNotFound,
    ArtifactStoreError,
    DigestMismatch,
    InvalidDigest,
)
from controller.artifacts.factory import store_from_url
from controller.artifacts.local import LocalArtifactStore
from controller.artifacts.memory import MemoryArtifactStore

__all__ = [
    "ArtifactNotFound",
    "ArtifactRef",
    "ArtifactStore",
    "ArtifactStoreError",
    "DigestMismatch",
    "InvalidDigest",
    "LocalArtifactStore",
    "MemoryArtifactStore",
    "store_from_url",
]
