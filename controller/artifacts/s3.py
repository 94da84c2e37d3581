"""S3 (or S3-compatible) artifact store via boto3: ``s3://bucket/prefix/sha256/ab/abcdef...``.

``put_stream`` uploads to a staging key while hashing (multipart above
``multipart_threshold``), then server-side copies to the content address and deletes the
staging key, so no object ever sits under a digest it does not hash to. Failed multipart
uploads are aborted by boto3's transfer manager.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from controller.artifacts.base import (
    ArtifactRef,
    HashingReader,
    PutFileFromStream,
    check_digest,
    check_expected,
    check_range,
)
from controller.artifacts.errors import ArtifactNotFound, ArtifactStoreError

logger = logging.getLogger(__name__)
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Settings:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3  # total tries per request, first one included
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunksize: int = 16 * 1024 * 1024
    max_concurrency: int = 4


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ArtifactStore(PutFileFromStream):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any | None = None,
        settings: S3Settings | None = None,
        presign_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings or S3Settings()
        s = self.settings
        config = Config(
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.read_timeout_s,
            retries={"total_max_attempts": s.max_attempts, "mode": "standard"},
            signature_version="s3v4",  # presigned URLs too (SigV2 is gone from most regions)
        )
        self._client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        # SigV4 signs the host: URLs for devices that reach the store under another name are
        # signed by a client of that endpoint (presigning makes no request)
        self._presigner = (
            boto3.client("s3", endpoint_url=presign_endpoint_url, region_name=region, config=config)
            if presign_endpoint_url and presign_endpoint_url != endpoint_url
            else self._client
        )
        self._transfer = TransferConfig(
            multipart_threshold=s.multipart_threshold,
            multipart_chunksize=s.multipart_chunksize,
            max_concurrency=s.max_concurrency,
        )

    def check_reachable(self) -> None:
        """Fail now, not at the first upload, when the endpoint or the bucket is not there.

        Bounded like every other call: ``connect_timeout_s`` per try, ``max_attempts`` tries.
        A 403 passes (a policy may allow objects but not HeadBucket): the endpoint answered."""
        where = self._client.meta.endpoint_url
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in ("403", "AccessDenied", "Forbidden"):
                logger.warning("s3://%s at %s: HeadBucket denied, continuing", self.bucket, where)
                return
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ArtifactStoreError(
                    f"S3 bucket {self.bucket!r} does not exist at {where}"
                ) from exc
            raise ArtifactStoreError(f"S3 store s3://{self.bucket} at {where}: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactStoreError(f"S3 store unreachable at {where}: {exc}") from exc

    def _key(self, sha256: str) -> str:
        check_digest(sha256)
        name = f"sha256/{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _staging_key(self) -> str:
        name = f"staging/{uuid.uuid4().hex}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> ArtifactRef:
        digest = hashlib.sha256(data).hexdigest()
        check_expected(digest, expected_sha256)
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactStoreError(f"uploading artifact {digest} failed: {exc}") from exc
        return ArtifactRef(digest, len(data))

    def put_stream(self, reader: BinaryIO, expected_sha256: str | None = None) -> ArtifactRef:
        hashing = HashingReader(reader)
        staging = self._staging_key()
        try:
            self._client.upload_fileobj(
                cast(BinaryIO, hashing), self.bucket, staging, Config=self._transfer
            )
            digest = hashing.hexdigest()
            check_expected(digest, expected_sha256)
            if not self.exists(digest):
                self._client.copy(
                    {"Bucket": self.bucket, "Key": staging},
                    self.bucket,
                    self._key(digest),
                    Config=self._transfer,
                )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise ArtifactStoreError(f"uploading the artifact failed: {exc}") from exc
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.delete_object(Bucket=self.bucket, Key=staging)
        logger.debug("stored artifact %s (%d bytes) in s3://%s", digest, hashing.size, self.bucket)
        return ArtifactRef(digest, hashing.size)

    def _get(self, sha256: str, **kwargs: Any) -> Any:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(sha256), **kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ArtifactNotFound(f"artifact {sha256} not found") from exc
            raise ArtifactStoreError(f"reading artifact {sha256} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactStoreError(f"reading artifact {sha256} failed: {exc}") from exc

    def open(self, sha256: str) -> BinaryIO:
        return cast(BinaryIO, self._get(sha256)["Body"])

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        size = self.size(sha256)
        if offset > size:
            raise ArtifactStoreError(f"offset {offset} beyond end of {sha256} ({size})")
        if length == 0 or offset == size:
            return b""
        end = min(offset + length, size) - 1
        body = self._get(sha256, Range=f"bytes={offset}-{end}")["Body"]
        try:
            return cast(bytes, body.read())
        except (BotoCoreError, OSError) as exc:
            raise ArtifactStoreError(f"reading artifact {sha256} failed: {exc}") from exc
        finally:
            body.close()

    def _head(self, sha256: str) -> dict[str, Any]:
        try:
            return cast(
                dict[str, Any], self._client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            )
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ArtifactNotFound(f"artifact {sha256} not found") from exc
            raise ArtifactStoreError(f"looking up artifact {sha256} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactStoreError(f"looking up artifact {sha256} failed: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        try:
            self._head(sha256)
        except ArtifactNotFound:
            return False
        return True

    def size(self, sha256: str) -> int:
        return int(self._head(sha256)["ContentLength"])

    def delete(self, sha256: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactStoreError(f"deleting artifact {sha256} failed: {exc}") from exc

    def presigned_url(self, sha256: str, expires_s: int = 3600) -> str | None:
        self._head(sha256)
        try:
            return cast(
                str,
                self._presigner.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self._key(sha256)},
                    ExpiresIn=expires_s,
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactStoreError(f"presigning artifact {sha256} failed: {exc}") from exc

    def list_digests(self) -> Iterator[str]:
        base = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for obj in page.get("Contents", []):
                    yield str(obj["Key"]).rsplit("/", 1)[-1]
        except (ClientError, BotoCoreError) as exc:
            raise ArtifactStoreError(f"listing artifacts failed: {exc}") from exc
