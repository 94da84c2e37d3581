"""The model pipeline through a real controller: add + build over the admin API, records on
SQLite/PostgreSQL, artifacts in the local or S3 store, signed metadata and downloads over the
device API (python-tuf verification, tampering, resume), bad input leaving nothing behind,
and on-device benchmarks replacing the controller's estimate."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.bench import run_bench, trusted_updater
from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials, Identity
from agent.updates_client import UpdateClient
from controller.app import Controller
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from edgefleet.modelmeta import Preprocessing
from edgefleet.updates import ArtifactMismatch, verify_artifact_stream
from edgefleet.v1 import models_pb2, models_pb2_grpc
from tests.fleet import Admin, postgres_available, postgres_database, start_controller, status_code

PRE = Preprocessing(size=(32, 32), channels=1)
FEW = ["onnx-fp32", "onnx-fp16", "onnx-int8-static"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("tiny")
    onnx = make_tiny_cnn(tmp / "tiny.onnx", width=8)
    x = synthetic_frames(32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=self_labels(onnx, x, PRE))
    bad = io.BytesIO()
    np.savez(bad, x=x, y=np.full(len(x), 42))  # labels beyond the model's 10 classes
    return {"onnx": onnx.read_bytes(), "val": buf.getvalue(), "bad_val": bad.getvalue()}


def _controller(tmp_path: Path, db: str = "", **kw: object) -> Controller:
    return start_controller(tmp_path / "controller", db=db, **kw)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def controller(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Controller]:
    if request.param == "postgresql":
        if not postgres_available():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        with postgres_database() as url:
            ctl = _controller(tmp_path, url)
            yield ctl
            ctl.stop()
    else:
        ctl = _controller(tmp_path)
        yield ctl
        ctl.stop()


class Models:
    def __init__(self, controller: Controller) -> None:
        self.admin = Admin(controller)
        self.stub = models_pb2_grpc.ModelAdminServiceStub(self.admin.channel)

    def upload(self, data: bytes) -> str:
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] or [b""]
        reqs = iter(models_pb2.UploadArtifactChunk(data=c) for c in chunks)
        return str(self.stub.UploadArtifact(reqs, timeout=10).sha256)

    def add(self, name: str, onnx: bytes, val: bytes, **kw: str) -> models_pb2.ModelVersion:
        request = models_pb2.AddModelRequest(
            name=name, onnx_sha256=self.upload(onnx), validation_sha256=self.upload(val), **kw
        )
        return self.stub.AddModel(request, timeout=30).model

    def build(self, name: str, profiles: tuple[str, ...] = ()) -> list[models_pb2.BuildModelEvent]:
        request = models_pb2.BuildModelRequest(
            name=name, no_tflite=True, only_variants=FEW, measure_runs=3, profiles=profiles
        )
        return list(self.stub.BuildModel(request, timeout=120))


def _add_and_build(ctl: Controller, files: dict[str, bytes]) -> Models:
    models = Models(ctl)
    assert models.add("tiny", files["onnx"], files["val"]).version == 1
    events = models.build("tiny")
    phases = [(e.progress.variant, e.progress.phase) for e in events if e.HasField("progress")]
    assert ("onnx-fp32", "built") in phases
    assert events[-1].HasField("report_json")
    return models


def test_build_records_variants_and_selections(controller: Controller, files: dict) -> None:
    models = _add_and_build(controller, files)
    listing = models.stub.ListVariants(models_pb2.ListVariantsRequest(name="tiny"), timeout=10)
    built = {v.variant: v for v in listing.variants if v.status == "built"}
    assert set(built) == set(FEW)
    for v in built.values():
        assert v.size_bytes > 0 and v.zstd_bytes > 0 and v.latency_median_ms > 0
        assert v.latency_p95_ms >= v.latency_median_ms and 0 <= v.accuracy <= 1
        assert controller.model_parts.store.exists(v.sha256)
    skipped = [v for v in listing.variants if v.variant.startswith("tflite")]
    assert all(v.status == "skipped" and "tflite" in v.reason for v in skipped)
    profiles = {p.name for p in controller.profiles}
    assert {s.profile for s in listing.selections} == profiles
    chosen = [s for s in listing.selections if s.variant]
    assert chosen and all(
        s.target_path in controller.model_parts.releases.targets() for s in chosen
    )
    for s in listing.selections:  # every variant not chosen says why
        assert set(s.rejected) == set(built) - {s.variant}
    sel = chosen[0]
    selected = controller.models.selected_variant("tiny", 1, sel.profile)
    assert selected is not None and selected.variant_id == sel.variant_id
    assert selected.metadata.sha256 == selected.sha256


def test_bad_input_leaves_store_and_db_unchanged(tmp_path: Path, files: dict) -> None:
    ctl = _controller(tmp_path)
    try:
        models = Models(ctl)
        before = set(ctl.model_parts.store.list_digests())
        for onnx, val in ((b"not an onnx file", files["val"]), (files["onnx"], files["bad_val"])):
            with pytest.raises(grpc.RpcError) as err:
                models.add("tiny", onnx, val)
            assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            models.add("tiny", files["onnx"], files["val"], cloud_for="no-such-model")
        assert status_code(err.value) == grpc.StatusCode.NOT_FOUND
        assert set(ctl.model_parts.store.list_digests()) == before
        assert ctl.models.list_models() == []
        models.add("tiny", files["onnx"], files["val"])
        with pytest.raises(grpc.RpcError) as err:
            models.build("tiny", profiles=("no-such-profile",))
        assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert ctl.models.variants("tiny").variants == []
    finally:
        ctl.stop()


def _device(ctl: Controller, tmp_path: Path) -> tuple[Path, UpdateClient]:
    token = Admin(ctl).register("cam-1")
    data_dir = tmp_path / "agent"
    enroll(data_dir, f"127.0.0.1:{ctl.grpc_port}", token, detect(), attempts=1)
    identity = Identity.load(data_dir)
    channel = device_channel(identity.controller, Credentials.load(data_dir), 4 << 20)
    return data_dir, UpdateClient(channel, timeout_s=10, attempts=2, backoff_s=0.05)


def test_signed_download_verifies_resumes_and_detects_tampering(
    tmp_path: Path, files: dict
) -> None:
    ctl = _controller(tmp_path)
    try:
        _add_and_build(ctl, files)
        data_dir, client = _device(ctl, tmp_path)
        profile = Identity.load(data_dir).profile
        selected = ctl.models.selected_variant("tiny", 1, profile)
        assert selected is not None
        updater = trusted_updater(data_dir, client)
        updater.refresh()  # python-tuf: root, timestamp, snapshot, targets
        target = updater.get_target(selected.target_path, profile, variant_id=selected.variant_id)
        dest = updater.download_target(target, tmp_path / "model.onnx")
        original = dest.read_bytes()
        assert len(original) == selected.size
        # resume: keep a prefix, fetch the rest from an offset
        half = len(original) // 2
        (tmp_path / "part").write_bytes(original[:half])
        assert client.download(selected.sha256, tmp_path / "part", offset=half) == len(original)
        assert (tmp_path / "part").read_bytes() == original
        # one flipped byte fails verification against the signed metadata
        flipped = bytearray(original)
        flipped[len(flipped) // 3] ^= 0x01
        with pytest.raises(ArtifactMismatch):
            verify_artifact_stream([bytes(flipped)], target.length, target.sha256)
        with pytest.raises(Exception, match=r"no variant artifact"):
            client.download(ctl.models.list_models()[0].source_sha256, tmp_path / "src")
    finally:
        ctl.stop()


def test_device_benchmarks_replace_the_estimate(tmp_path: Path, files: dict) -> None:
    ctl = _controller(tmp_path)
    try:
        _add_and_build(ctl, files)
        data_dir, client = _device(ctl, tmp_path)
        profile = Identity.load(data_dir).profile
        outcomes, reselected = run_bench(data_dir, client, profile, warmup=1, runs=3)
        assert outcomes and all(o.ok for o in outcomes), outcomes
        assert reselected == ["tiny:1"]
        sel = next(s for s in ctl.models.variants("tiny").selections if s.profile == profile)
        assert sel.latency_source == "device"
        measured = {o.variant_id: o.median_ms for o in outcomes}
        assert sel.latency_ms == pytest.approx(measured[sel.variant_id])
    finally:
        ctl.stop()


def test_s3_store_build_and_download(
    tmp_path: Path, files: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"b-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    ctl = _controller(tmp_path, store=f"s3://{bucket}/artifacts", store_endpoint_url=endpoint)
    try:
        _add_and_build(ctl, files)
        data_dir, client = _device(ctl, tmp_path)
        profile = Identity.load(data_dir).profile
        selected = ctl.models.selected_variant("tiny", 1, profile)
        assert selected is not None
        updater = trusted_updater(data_dir, client)
        target = updater.get_target(selected.target_path, profile)
        dest = updater.download_target(target, tmp_path / "model.onnx")
        assert dest.stat().st_size == selected.size
        keys = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").list_objects_v2(
            Bucket=bucket
        )
        assert any(selected.sha256 in o["Key"] for o in keys.get("Contents", []))
    finally:
        ctl.stop()
        server.stop()
