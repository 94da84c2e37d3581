"""One contract suite run against every ArtifactStore implementation.

The S3 store runs against moto's standalone server on a loopback port: moto stands in for
S3 here (no cloud account, no internet). Multipart upload is exercised by a tiny threshold.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    DigestMismatch,
    InvalidDigest,
    LocalArtifactStore,
    MemoryArtifactStore,
)

MULTIPART = 5 * 1024 * 1024  # S3's smallest allowed part size


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_s3_store(endpoint: str, bucket: str) -> ArtifactStore:
    import boto3

    from controller.artifacts.s3 import S3ArtifactStore, S3Settings

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    settings = S3Settings(
        multipart_threshold=MULTIPART, multipart_chunksize=MULTIPART, max_concurrency=2
    )
    return S3ArtifactStore(bucket, "fleet/artifacts", client=client, settings=settings)


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "memory":
        return MemoryArtifactStore()
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    endpoint = request.getfixturevalue("moto_endpoint")
    return make_s3_store(endpoint, f"b-{os.urandom(4).hex()}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FailingReader(io.RawIOBase):
    """Yields some bytes, then fails like a dropped connection."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            raise OSError("connection reset")
        take = self._left if n < 0 else min(n, self._left)
        self._left -= take
        return b"x" * take


def test_put_bytes_round_trip(store: ArtifactStore) -> None:
    data = b"model bytes " * 1000
    ref = store.put_bytes(data)
    assert ref.sha256 == sha(data)
    assert ref.size == len(data)
    assert store.exists(ref.sha256)
    assert store.size(ref.sha256) == len(data)
    with store.open(ref.sha256) as f:
        assert f.read() == data
    assert list(store.list_digests()) == [ref.sha256]


def test_put_file_multipart_and_read_range(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(MULTIPART * 2 + 12345)  # above the S3 multipart threshold: 3 parts
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    ref = store.put_file(src)
    assert (ref.sha256, ref.size) == (sha(data), len(data))
    assert store.read_range(ref.sha256, 0, 10) == data[:10]
    assert store.read_range(ref.sha256, MULTIPART - 3, 7) == data[MULTIPART - 3 : MULTIPART + 4]
    assert store.read_range(ref.sha256, len(data) - 5, 100) == data[-5:]
    assert store.read_range(ref.sha256, len(data), 10) == b""
    with pytest.raises(ArtifactStoreError):
        store.read_range(ref.sha256, len(data) + 1, 10)
    # resumable download: reassemble from 1 MiB ranges
    chunks = [store.read_range(ref.sha256, off, 1 << 20) for off in range(0, len(data), 1 << 20)]
    assert sha(b"".join(chunks)) == ref.sha256


def test_put_is_idempotent(store: ArtifactStore) -> None:
    first = store.put_bytes(b"same")
    second = store.put_stream(io.BytesIO(b"same"))
    assert first == second
    assert list(store.list_digests()) == [first.sha256]


def test_missing_artifact_errors(store: ArtifactStore) -> None:
    missing = sha(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(ArtifactNotFound):
        store.open(missing)
    with pytest.raises(ArtifactNotFound):
        store.size(missing)
    with pytest.raises(ArtifactNotFound):
        store.read_range(missing, 0, 1)
    with pytest.raises(ArtifactNotFound):
        store.presigned_url(missing, 60)
    with pytest.raises(InvalidDigest):
        store.exists("../../etc/passwd")


def test_delete(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"to delete")
    store.delete(ref.sha256)
    assert not store.exists(ref.sha256)
    store.delete(ref.sha256)  # deleting twice is fine
    assert list(store.list_digests()) == []


def test_expected_digest_mismatch_leaves_nothing(store: ArtifactStore) -> None:
    with pytest.raises(DigestMismatch):
        store.put_stream(io.BytesIO(b"tampered"), expected_sha256=sha(b"original"))
    with pytest.raises(DigestMismatch):
        store.put_bytes(b"tampered", expected_sha256=sha(b"original"))
    assert list(store.list_digests()) == []
    ref = store.put_bytes(b"original", expected_sha256=sha(b"original"))
    assert store.exists(ref.sha256)


def test_failed_upload_leaves_no_partial_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactStoreError):
        store.put_stream(FailingReader(good=MULTIPART + 100))  # type: ignore[arg-type]
    assert list(store.list_digests()) == []
    if isinstance(store, LocalArtifactStore):
        leftovers = [p for p in store.root.rglob("*") if p.is_file()]
        assert leftovers == []
    client = getattr(store, "_client", None)
    if client is not None:
        listed = client.list_objects_v2(Bucket=store.bucket)  # type: ignore[attr-defined]
        assert listed.get("Contents", []) == []
        uploads = client.list_multipart_uploads(Bucket=store.bucket)  # type: ignore[attr-defined]
        assert uploads.get("Uploads", []) == []
