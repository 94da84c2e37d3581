"""In-memory artifact store for unit tests."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from typing import BinaryIO

from controller.artifacts.base import (
    CHUNK_SIZE,
    ArtifactRef,
    HashingReader,
    PutFileFromStream,
    check_digest,
    check_expected,
    check_range,
)
from controller.artifacts.errors import ArtifactNotFound, ArtifactStoreError


class MemoryArtifactStore(PutFileFromStream):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> ArtifactRef:
        digest = hashlib.sha256(data).hexdigest()
        check_expected(digest, expected_sha256)
        with self._lock:
            self._blobs[digest] = bytes(data)
        return ArtifactRef(digest, len(data))

    def put_stream(self, reader: BinaryIO, expected_sha256: str | None = None) -> ArtifactRef:
        hashing = HashingReader(reader)
        parts = []
        try:
            while chunk := hashing.read(CHUNK_SIZE):
                parts.append(chunk)
        except OSError as exc:
            raise ArtifactStoreError(f"reading the artifact failed: {exc}") from exc
        digest = hashing.hexdigest()
        check_expected(digest, expected_sha256)
        with self._lock:
            self._blobs[digest] = b"".join(parts)
        return ArtifactRef(digest, hashing.size)

    def _get(self, sha256: str) -> bytes:
        check_digest(sha256)
        with self._lock:
            data = self._blobs.get(sha256)
        if data is None:
            raise ArtifactNotFound(f"artifact {sha256} not found")
        return data

    def open(self, sha256: str) -> BinaryIO:
        return io.BytesIO(self._get(sha256))

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        data = self._get(sha256)
        if offset > len(data):
            raise ArtifactStoreError(f"offset {offset} beyond end of {sha256} ({len(data)})")
        return data[offset : offset + length]

    def exists(self, sha256: str) -> bool:
        check_digest(sha256)
        with self._lock:
            return sha256 in self._blobs

    def size(self, sha256: str) -> int:
        return len(self._get(sha256))

    def delete(self, sha256: str) -> None:
        check_digest(sha256)
        with self._lock:
            self._blobs.pop(sha256, None)

    def presigned_url(self, sha256: str, expires_s: int = 3600) -> str | None:
        self._get(sha256)
        return None

    def list_digests(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._blobs))
