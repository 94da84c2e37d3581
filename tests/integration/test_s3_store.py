"""S3-specific behaviour of S3ArtifactStore, against moto's standalone server on loopback.

moto stands in for S3: it speaks the S3 REST API well enough for uploads (single and
multipart), ranged GETs, copies and presigned URLs, without a cloud account or internet.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from controller.artifacts import store_from_url
from controller.artifacts.s3 import S3ArtifactStore, S3Settings

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 reads credentials from the environment; the store itself never does.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def make_bucket(endpoint: str) -> str:
    bucket = f"b-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


def test_large_file_goes_up_in_parts(endpoint: str, creds: None, tmp_path: Path) -> None:
    bucket = make_bucket(endpoint)
    store = S3ArtifactStore(
        bucket,
        "p",
        endpoint_url=endpoint,
        settings=S3Settings(multipart_threshold=PART, multipart_chunksize=PART),
    )
    data = os.urandom(PART * 2 + 1)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    ref = store.put_file(src)
    head = store._client.head_object(Bucket=bucket, Key=f"p/sha256/{ref.sha256[:2]}/{ref.sha256}")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a 3-part multipart object
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    # nothing but the content-addressed object remains (the staging key is gone)
    keys = [o["Key"] for o in store._client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"p/sha256/{ref.sha256[:2]}/{ref.sha256}"]


def test_client_has_bounded_timeouts_and_retries(endpoint: str, creds: None) -> None:
    settings = S3Settings(connect_timeout_s=2.0, read_timeout_s=7.0, max_attempts=2)
    store = S3ArtifactStore(make_bucket(endpoint), endpoint_url=endpoint, settings=settings)
    config = store._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7.0)
    assert config.retries["total_max_attempts"] == 2


def test_presigned_url_serves_the_artifact(endpoint: str, creds: None) -> None:
    store = store_from_url(f"s3://{make_bucket(endpoint)}/fleet", endpoint_url=endpoint)
    assert isinstance(store, S3ArtifactStore)
    ref = store.put_bytes(b"signed model")
    url = store.presigned_url(ref.sha256, expires_s=60)
    assert url is not None and url.startswith(endpoint)
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == b"signed model"


def test_presigned_urls_carry_the_endpoint_devices_reach(endpoint: str, creds: None) -> None:
    # the controller talks to 127.0.0.1; devices reach the same server as "localhost"
    public = endpoint.replace("127.0.0.1", "localhost")
    store = store_from_url(
        f"s3://{make_bucket(endpoint)}/fleet", endpoint_url=endpoint, presign_endpoint_url=public
    )
    ref = store.put_bytes(b"model for devices")
    url = store.presigned_url(ref.sha256, expires_s=60)
    assert url is not None and url.startswith(public + "/") and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == b"model for devices"
