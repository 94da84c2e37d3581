"""Filesystem artifact store: ``root/sha256/ab/abcdef...``.

A put streams into a temporary file under ``root/sha256`` (same filesystem as its final
place), hashing as it writes, fsyncs it, then ``os.replace``-s it into place and fsyncs the
directory. A crash or failure leaves either the complete artifact or nothing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
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

logger = logging.getLogger(__name__)
TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalArtifactStore(PutFileFromStream):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "sha256"
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot create artifact store at {root}: {exc}") from exc

    def path_of(self, sha256: str) -> Path:
        check_digest(sha256)
        return self._objects / sha256[:2] / sha256

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> ArtifactRef:
        return self.put_stream(io.BytesIO(data), expected_sha256)

    def put_stream(self, reader: BinaryIO, expected_sha256: str | None = None) -> ArtifactRef:
        hashing = HashingReader(reader)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self._objects)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := hashing.read(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = hashing.hexdigest()
            check_expected(digest, expected_sha256)
            final = self.path_of(digest)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise ArtifactStoreError(f"writing the artifact failed: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        logger.debug("stored artifact %s (%d bytes)", digest, hashing.size)
        return ArtifactRef(digest, hashing.size)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_of(sha256), "rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {sha256} not found") from exc
        except OSError as exc:
            raise ArtifactStoreError(f"cannot open artifact {sha256}: {exc}") from exc

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        with self.open(sha256) as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise ArtifactStoreError(f"offset {offset} beyond end of {sha256} ({size})")
            f.seek(offset)
            return f.read(length)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {sha256} not found") from exc

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(sha256).unlink()

    def presigned_url(self, sha256: str, expires_s: int = 3600) -> str | None:
        if not self.exists(sha256):
            raise ArtifactNotFound(f"artifact {sha256} not found")
        return None

    def list_digests(self) -> Iterator[str]:
        for shard in sorted(self._objects.iterdir()):
            if shard.is_dir():
                for entry in sorted(shard.iterdir()):
                    if not entry.name.startswith(TMP_PREFIX):
                        yield entry.name
