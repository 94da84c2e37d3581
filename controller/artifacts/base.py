"""The artifact store interface: content-addressed blobs keyed by their sha256.

Every implementation hashes content while it streams in (never holding a whole file in
memory), publishes it under its digest only once it is complete, and leaves nothing behind
when a put fails.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from controller.artifacts.errors import ArtifactStoreError, DigestMismatch, InvalidDigest

CHUNK_SIZE = 1024 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives (its sha256) and how big it is."""

    sha256: str
    size: int


@runtime_checkable
class ArtifactStore(Protocol):
    def put_file(self, path: str | Path, expected_sha256: str | None = None) -> ArtifactRef: ...

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> ArtifactRef: ...

    def put_stream(self, reader: BinaryIO, expected_sha256: str | None = None) -> ArtifactRef: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def read_range(self, sha256: str, offset: int, length: int) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def delete(self, sha256: str) -> None: ...

    def presigned_url(self, sha256: str, expires_s: int = 3600) -> str | None: ...

    def list_digests(self) -> Iterator[str]: ...


def check_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise InvalidDigest(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise InvalidDigest(f"invalid byte range offset={offset} length={length}")


def check_expected(actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected:
        raise DigestMismatch(f"content hashes to {actual}, expected {expected}")


class HashingReader:
    """Wraps a binary reader and hashes every byte read through it."""

    def __init__(self, reader: BinaryIO) -> None:
        self._reader = reader
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class PutFileFromStream:
    """``put_file`` for stores whose ``put_stream`` does the hashing and publishing."""

    def put_stream(self, reader: BinaryIO, expected_sha256: str | None = None) -> ArtifactRef:
        raise NotImplementedError

    def put_file(self, path: str | Path, expected_sha256: str | None = None) -> ArtifactRef:
        try:
            with open(path, "rb") as f:
                return self.put_stream(f, expected_sha256)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot read {path}: {exc}") from exc
