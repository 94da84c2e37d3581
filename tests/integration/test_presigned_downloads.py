"""Artifacts from S3 over presigned URLs (issue 12): a real controller on port 0 with the S3
store (moto's standalone server on loopback stands in for S3), agents enrolled over mutual
TLS and running the real OTA path as ``agent.assembly.build_ota_service`` builds it.

- a released variant installs over the URL and the controller streams 0 artifact bytes;
- a tampered object in the bucket is refused (signed sha256) and nothing is installed;
- an expired URL (403, as S3 answers: moto does not check expiry, so a loopback HTTP server
  answering as S3 does stands in), a bucket the device cannot reach (connection refused) and
  a store without URLs fall back to the gRPC stream, counted;
- a device gets no URL for an artifact it may not fetch: NOT_FOUND, as DownloadArtifact.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import grpc
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from agent.ota.remote import UpdateServiceSource
from controller.app import Controller
from controller.artifacts import ArtifactStoreError
from controller.artifacts.s3 import S3ArtifactStore
from edgefleet.v1 import updates_pb2, updates_pb2_grpc
from tests.fleet import Admin, start_controller
from tests.integration.test_ota_refusals import Agent, _make_agent, assign, reported, variant_of
from tests.rollout_fleet import add_and_build

pytestmark = pytest.mark.timeout(180)


@dataclass
class S3Fleet:
    ctl: Controller
    admin: Admin
    v1: int
    root: Path
    bucket: str
    endpoint: str
    devices: int = 0

    @property
    def store(self) -> S3ArtifactStore:
        store = self.ctl.model_parts.store
        assert isinstance(store, S3ArtifactStore)
        return store

    def s3(self) -> object:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Fleet]:
    from moto.server import ThreadedMotoServer

    root = tmp_path_factory.mktemp("presigned")
    with pytest.MonkeyPatch.context() as mp:
        # boto3 reads credentials from the environment; the store itself never does
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"fleet-{os.urandom(4).hex()}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        ctl = start_controller(
            root / "controller", store=f"s3://{bucket}/artifacts", store_endpoint_url=endpoint
        )
        admin = Admin(ctl)
        try:
            v1 = add_and_build(admin, root, "tiny", 8)
            yield S3Fleet(ctl, admin, v1, root, bucket, endpoint)
        finally:
            admin.close()
            ctl.stop()
            server.stop()


@pytest.fixture
def agent(fleet: S3Fleet) -> Iterator[Agent]:
    """A freshly enrolled agent with no model yet, v1 assigned to it."""
    fleet.devices += 1
    name = f"url-{fleet.devices:02d}"
    token = fleet.admin.register(name, "auto", site="lab")
    data_dir = fleet.root / "agents" / name
    identity = enroll(data_dir, f"127.0.0.1:{fleet.ctl.grpc_port}", token, detect())
    a = _make_agent(data_dir, identity)
    assign(fleet.ctl, a, fleet.v1)
    try:
        yield a
    finally:
        a.close()


def url_stats(a: Agent) -> Counter[str]:
    """The agent's presigned-URL counters (UpdateServiceSource.url_stats, behind the updater)."""
    source = a.service.updater._fetch_chunks.__self__  # type: ignore[attr-defined]
    assert isinstance(source, UpdateServiceSource)
    return source.url_stats


def traffic(fleet: S3Fleet) -> tuple[int, int, int]:
    t = fleet.ctl.model_parts.artifact_traffic
    return t.streamed_bytes, t.streams, t.urls_issued


def install(fleet: S3Fleet, a: Agent) -> None:
    a.pull_and_handle()
    a.service.updater.tick()  # zero-second probation: commit


def assert_runs_v1(fleet: S3Fleet, a: Agent) -> None:
    v = variant_of(fleet.ctl, a, fleet.v1)
    assert a.service.current_variant == v.variant_id
    assert reported(fleet.ctl, a)[0] == "committed"
    state = a.service.store.state()
    assert state.active is not None
    a.service.store.verify_slot(state.active)  # every installed byte hashes as recorded
    assert list((a.service.store.root.parent / "ota-url").glob("*")) == []  # staging cleaned


def test_variant_installs_over_the_url_and_the_controller_streams_no_byte(
    fleet: S3Fleet, agent: Agent
) -> None:
    before = traffic(fleet)
    install(fleet, agent)
    assert_runs_v1(fleet, agent)
    streamed, streams, urls = (x - y for x, y in zip(traffic(fleet), before, strict=True))
    assert (streamed, streams, urls) == (0, 0, 1)
    assert url_stats(agent) == Counter(url=1)
    # the same counters on /metrics (open on loopback: no metrics token in this controller)
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.ctl.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    issued = re.search(r"^edgefleet_artifact_urls_issued_total (\S+)$", text, re.M)
    assert issued is not None and float(issued.group(1)) == traffic(fleet)[2]


def test_a_tampered_object_is_refused_and_nothing_installed(fleet: S3Fleet, agent: Agent) -> None:
    v = variant_of(fleet.ctl, agent, fleet.v1)
    s3 = fleet.s3()
    key = f"artifacts/sha256/{v.sha256[:2]}/{v.sha256}"
    original = s3.get_object(Bucket=fleet.bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF  # same length, one byte flipped
    s3.put_object(Bucket=fleet.bucket, Key=key, Body=bytes(tampered))  # type: ignore[attr-defined]
    try:
        agent.pull_and_handle()
    finally:
        s3.put_object(Bucket=fleet.bucket, Key=key, Body=original)  # type: ignore[attr-defined]
    # the URL's bytes were refused before the updater saw one; the stream (same bucket) then
    # delivered the same tampered bytes, which the updater's own check refused
    assert url_stats(agent) == Counter(fallback=1, **{"fallback:verification": 1})
    phase, reason = reported(fleet.ctl, agent)
    assert phase == "failed" and "sha256" in reason, reason
    assert agent.service.current_variant is None and agent.service.store.state().active is None
    assert agent.swaps == []
    assert list((agent.service.store.root.parent / "ota-url").glob("*")) == []


class _ExpiredUrl(http.server.BaseHTTPRequestHandler):
    """Answers every GET as S3 answers an expired presigned URL."""

    def do_GET(self) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def expired_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ExpiredUrl)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fleet/artifacts/x?X-Amz-Expires=1"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fleet/artifacts/x"  # nothing listens: connection refused


def _store_fails(sha256: str, expires_s: int = 3600) -> str:
    raise ArtifactStoreError("presigning failed: S3 unreachable from the controller")


@pytest.mark.parametrize("case", ["expired", "bucket_down", "no_urls", "store_error"])
def test_a_failing_url_falls_back_to_the_stream(
    fleet: S3Fleet,
    agent: Agent,
    expired_url: str,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    url = {"expired": expired_url, "bucket_down": _closed_port_url(), "no_urls": None}.get(case)
    # the controller hands out this URL (the servicer calls this very store object)
    presign = _store_fails if case == "store_error" else lambda sha256, expires_s=3600: url
    monkeypatch.setattr(fleet.store, "presigned_url", presign)
    before = traffic(fleet)
    install(fleet, agent)
    assert_runs_v1(fleet, agent)
    size = int(variant_of(fleet.ctl, agent, fleet.v1).size)
    streamed, streams, urls = (x - y for x, y in zip(traffic(fleet), before, strict=True))
    assert streamed == size and streams == 1
    expected = {
        "expired": (1, Counter(fallback=1, **{"fallback:http_403": 1})),
        "bucket_down": (1, Counter(fallback=1, **{"fallback:unreachable": 1})),
        "no_urls": (0, Counter(off=1)),  # FAILED_PRECONDITION: not asked again for a while
        "store_error": (0, Counter(fallback=1, **{"fallback:no_url": 1})),  # not "off"
    }[case]
    assert (urls, url_stats(agent)) == expected


def test_no_url_for_an_artifact_the_device_may_not_fetch(fleet: S3Fleet, agent: Agent) -> None:
    data_dir = agent.service.store.root.parent
    from agent.identity import Identity

    identity = Identity.load(data_dir)
    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    stub = updates_pb2_grpc.UpdateServiceStub(channel)
    v = variant_of(fleet.ctl, agent, fleet.v1)
    source = fleet.ctl.models.info("tiny", fleet.v1).source_sha256
    assert fleet.store.exists(source)  # in the bucket, but no device's to fetch
    try:
        # the one it may fetch, by target path and by digest
        for request in (
            updates_pb2.GetArtifactUrlRequest(target_path=v.target_path),
            updates_pb2.GetArtifactUrlRequest(sha256=v.sha256),
        ):
            answer = stub.GetArtifactUrl(request, timeout=10)
            assert answer.url.startswith(fleet.endpoint) and answer.size == v.size
            assert answer.sha256 == v.sha256 and "X-Amz-Signature=" in answer.url
        for request in (
            updates_pb2.GetArtifactUrlRequest(sha256=source),  # the source model
            updates_pb2.GetArtifactUrlRequest(sha256="0" * 64),
            updates_pb2.GetArtifactUrlRequest(target_path="tiny/999/none.onnx"),
        ):
            with pytest.raises(grpc.RpcError) as url_refused:
                stub.GetArtifactUrl(request, timeout=10)
            download = updates_pb2.DownloadArtifactRequest(
                sha256=request.sha256, target_path=request.target_path
            )
            with pytest.raises(grpc.RpcError) as stream_refused:
                list(stub.DownloadArtifact(download, timeout=10))
            assert url_refused.value.code() == stream_refused.value.code()
            assert url_refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()


def test_a_revoked_device_gets_no_url(fleet: S3Fleet, agent: Agent) -> None:
    from agent.identity import Identity
    from edgefleet.v1 import admin_pb2

    data_dir = agent.service.store.root.parent
    identity = Identity.load(data_dir)
    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    stub = updates_pb2_grpc.UpdateServiceStub(channel)
    v = variant_of(fleet.ctl, agent, fleet.v1)
    request = updates_pb2.GetArtifactUrlRequest(target_path=v.target_path)
    try:
        assert stub.GetArtifactUrl(request, timeout=10).url
        fleet.admin.stub.RevokeDevice(
            admin_pb2.RevokeDeviceRequest(name_or_id=agent.device_id), timeout=10
        )
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetArtifactUrl(request, timeout=10)
        assert refused.value.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED,
        )
    finally:
        channel.close()
