"""Immutable releases, through a real controller (gRPC on port 0, the operator CLI, a device
enrolled over mutual TLS): a built version is never rebuilt in place (``--rebuild`` makes a
new version that says so), unknown variant names are refused up front, a rollout installs
the variants it pinned whatever device benchmarks recommend later (and a repeated report
re-signs nothing), ``rollout start`` of an unbuilt cloud model gives a hint that works, and
``model add`` with an ONNX file as validation data is a one-line error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials, Identity
from controller.app import Controller
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from edgefleet.v1 import (
    models_pb2,
    models_pb2_grpc,
    rollouts_pb2,
    rollouts_pb2_grpc,
    updates_pb2,
    updates_pb2_grpc,
)
from tests.fleet import Admin, controller_with_admin, edgefleet_cli, status_code
from tests.rollout_fleet import PRE, add_tiny

FEW = ["onnx-fp32", "onnx-fp16", "onnx-int8-static"]
pytestmark = pytest.mark.timeout(300)


def _build(
    stub: models_pb2_grpc.ModelAdminServiceStub,
    name: str,
    version: int,
    only: list[str] = FEW,
    rebuild: bool = False,
) -> dict:
    request = models_pb2.BuildModelRequest(
        name=name, version=version, no_tflite=True, only_variants=only, measure_runs=2,
        rebuild=rebuild,
    )  # fmt: skip
    events = list(stub.BuildModel(request, timeout=180))
    assert events and events[-1].HasField("report_json")
    return dict(json.loads(events[-1].report_json))


def _signed(ctl: Controller, prefix: str) -> dict[str, tuple[str, int]]:
    return {
        path: (t.hashes["sha256"], t.length)
        for path, t in ctl.model_parts.releases.targets().items()
        if path.startswith(prefix)
    }


def _targets_json(ctl: Controller) -> bytes:
    return bytes(ctl.model_parts.releases.repo.metadata_bytes("targets"))


def test_a_built_version_never_changes(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        version = add_tiny(admin, tmp_path, "tiny", 8)
        # unknown variant names: refused before anything runs, the known ones listed
        with pytest.raises(grpc.RpcError) as err:
            _build(stub, "tiny", version, only=["bogus"])
        assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown variant bogus" in err.value.details()
        assert "known: onnx-fp32" in err.value.details()
        assert ctl.models.list_models()[0].build_status == ""

        _build(stub, "tiny", version)
        signed = _signed(ctl, f"models/tiny/{version}/")
        variants = ctl.models.variants("tiny", version)
        assert signed and variants.variants
        targets_json = _targets_json(ctl)

        # a second build of the built version, with or without an unknown variant name
        for only, code in ((FEW, "FAILED_PRECONDITION"), (["bogus"], "INVALID_ARGUMENT")):
            with pytest.raises(grpc.RpcError) as err:
                _build(stub, "tiny", version, only=only)
            assert status_code(err.value) == getattr(grpc.StatusCode, code), err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            _build(stub, "tiny", version)
        details = err.value.details()
        assert "already built" in details and "model add" in details and "--rebuild" in details
        assert _signed(ctl, f"models/tiny/{version}/") == signed
        assert _targets_json(ctl) == targets_json  # not even re-signed
        assert ctl.models.variants("tiny", version) == variants

        cli = edgefleet_cli(ctl.config.data_dir, "model", "build", f"tiny:{version}",
                            "--no-tflite", check=False)  # fmt: skip
        lines = cli.stderr.strip().splitlines()
        assert cli.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ")
        assert "--rebuild" in lines[0]

        # --rebuild: the same sources as a new version, which says what it rebuilt
        report = _build(stub, "tiny", version, rebuild=True)
        assert (report["model"], report["version"]) == ("tiny", version + 1)
        listed = {m.version: m for m in stub.ListModels(models_pb2.ListModelsRequest()).models}
        assert listed[version + 1].rebuilt_from == version and listed[version].rebuilt_from == 0
        assert listed[version + 1].source_sha256 == listed[version].source_sha256
        assert listed[version + 1].variants_built > 0
        assert _signed(ctl, f"models/tiny/{version}/") == signed
        assert ctl.models.variants("tiny", version) == variants
        rows = json.loads(
            edgefleet_cli(ctl.config.data_dir, "model", "list", "--format", "json").stdout
        )
        assert [r["rebuilt_from"] for r in rows] == [None, version]
        table = edgefleet_cli(ctl.config.data_dir, "model", "list").stdout
        assert "rebuild of" in table and f"tiny:{version}" in table
        shown = edgefleet_cli(ctl.config.data_dir, "model", "variants", f"tiny:{version + 1}")
        assert f"tiny:{version + 1} (rebuild of tiny:{version})" in shown.stdout


def _enroll(ctl: Controller, admin: Admin, root: Path, name: str) -> Identity:
    token = admin.register(name, "auto", site="lab")
    enroll(root / name, f"127.0.0.1:{ctl.grpc_port}", token, detect(), attempts=1)
    return Identity.load(root / name)


def test_a_rollout_installs_the_variants_it_pinned(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        rollouts = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        version = add_tiny(admin, tmp_path, "tiny", 8)
        _build(models, "tiny", version)
        a = _enroll(ctl, admin, tmp_path, "cam-a")
        pinned = ctl.models.selected_variant("tiny", version, a.profile)
        assert pinned is not None
        sel = next(s for s in ctl.models.variants("tiny", version).selections
                   if s.profile == a.profile)  # fmt: skip
        others = [k for k in sel.candidates if k != sel.variant]
        assert others, f"{a.profile} has one candidate only: {sel.rejected}"

        rollouts.StartRollout(
            rollouts_pb2.StartRolloutRequest(model="tiny", version=version, target="site=lab",
                                             stages=[1.0], soak_seconds=3600.0),
            timeout=10,
        )  # fmt: skip
        desired_a = ctl.rollouts.store.desired(a.device_id)
        assert desired_a is not None and desired_a.sha256 == pinned.sha256

        # the device measures: another candidate is far faster on it -> the recommendation moves
        channel = device_channel(a.controller, Credentials.load(tmp_path / "cam-a"), 4 << 20)
        device = updates_pb2_grpc.UpdateServiceStub(channel)
        faster = f"tiny:{version}:{others[0]}"
        results = [
            updates_pb2.BenchResult(variant_id=c.variant_id, ok=True,
                                    latency_median_ms=0.5 if c.variant_id == faster else 50.0,
                                    latency_p95_ms=0.6 if c.variant_id == faster else 60.0)
            for c in device.ListBenchCandidates(
                updates_pb2.ListBenchCandidatesRequest(model="tiny"), timeout=10
            ).candidates
        ]  # fmt: skip
        signed = _signed(ctl, f"models/tiny/{version}/")
        first = device.ReportBenchmarks(updates_pb2.ReportBenchmarksRequest(results=results))
        assert list(first.reselected) == [f"tiny:{version}"]
        now = ctl.models.selected_variant("tiny", version, a.profile)
        assert now is not None and now.variant_id == faster and now.sha256 != pinned.sha256
        assert _signed(ctl, f"models/tiny/{version}/") == signed  # same files, same targets
        targets_json = _targets_json(ctl)
        again = device.ReportBenchmarks(updates_pb2.ReportBenchmarksRequest(results=results))
        assert list(again.reselected) == []
        assert _targets_json(ctl) == targets_json  # a repeat report re-signs nothing
        channel.close()

        # a device that joins the running rollout gets what the rollout started with
        b = _enroll(ctl, admin, tmp_path, "cam-b")
        assert b.profile == a.profile
        ctl.rollouts.tick()
        desired_b = ctl.rollouts.store.desired(b.device_id)
        assert desired_b is not None, "device b was not assigned"
        assert (desired_b.variant_id, desired_b.sha256) == (pinned.variant_id, pinned.sha256)
        assert desired_b.target_path in ctl.model_parts.releases.targets()
        desired_a = ctl.rollouts.store.desired(a.device_id)
        assert desired_a is not None and desired_a.sha256 == pinned.sha256


def _upload(stub: models_pb2_grpc.ModelAdminServiceStub, data: bytes) -> str:
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    reqs = iter(models_pb2.UploadArtifactChunk(data=c) for c in chunks)
    return str(stub.UploadArtifact(reqs, timeout=30).sha256)


def _files(tmp_path: Path) -> tuple[Path, bytes]:
    onnx = make_tiny_cnn(tmp_path / "cloud.onnx", width=12)
    x = synthetic_frames(32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=self_labels(onnx, x, PRE))
    return onnx, buf.getvalue()


def test_an_onnx_file_as_validation_data_is_a_one_line_error(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        data_dir = ctl.config.data_dir
        onnx, val = _files(tmp_path)
        # an ONNX file as validation data: one line naming the option, no server temp path
        for option in ("--validation", "--calibration"):
            extra = ["--validation", str(onnx)] if option == "--validation" else []
            if option == "--calibration":
                (tmp_path / "val.npz").write_bytes(val)
                extra = ["--validation", str(tmp_path / "val.npz"), "--calibration", str(onnx)]
            cli = edgefleet_cli(data_dir, "model", "add", "m", "--onnx", str(onnx), *extra,
                                check=False)  # fmt: skip
            lines = cli.stderr.strip().splitlines()
            assert cli.returncode == 2 and len(lines) == 1, cli.stderr
            arrays = "x and y arrays" if option == "--validation" else "x array"
            assert lines[0] == f"error: {option}: not an .npz file with {arrays}", lines[0]
        with pytest.raises(grpc.RpcError) as err:  # the API names the field, not a temp file
            models.AddModel(
                models_pb2.AddModelRequest(name="m", onnx_sha256=_upload(models, onnx.read_bytes()),
                                           validation_sha256=_upload(models, onnx.read_bytes())),
                timeout=30,
            )  # fmt: skip
        assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "validation data: not an .npz file with x and y arrays"
        assert ctl.models.list_models() == []


def test_rollout_hint_for_an_unbuilt_cloud_model_works(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (_, admin):
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        rollouts = rollouts_pb2_grpc.RolloutAdminServiceStub(admin.channel)
        onnx, val = _files(tmp_path)
        # rollout start of an unbuilt cloud model: the hint says what it is and what works
        edge = add_tiny(admin, tmp_path, "tiny", 8)
        cloud_onnx, cloud_val = _upload(models, onnx.read_bytes()), _upload(models, val)
        cloud = models.AddModel(
            models_pb2.AddModelRequest(name="tiny-cloud", onnx_sha256=cloud_onnx,
                                       validation_sha256=cloud_val, cloud_for="tiny"),
            timeout=30,
        ).model  # fmt: skip
        start = rollouts_pb2.StartRolloutRequest(model="tiny-cloud", version=cloud.version,
                                                 stages=[1.0], soak_seconds=1.0)  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            rollouts.StartRollout(start, timeout=10)
        assert status_code(err.value) == grpc.StatusCode.FAILED_PRECONDITION
        hint = err.value.details()
        assert "cloud model of tiny" in hint, hint
        assert f"`edgefleet model build tiny-cloud:{cloud.version}`" in hint, hint
        with pytest.raises(grpc.RpcError) as err:
            rollouts.StartRollout(
                rollouts_pb2.StartRolloutRequest(model="tiny", version=edge, stages=[1.0]),
                timeout=10,
            )
        assert f"run `edgefleet model build tiny:{edge}` first" in err.value.details()
        # doing what the hint says works
        _build(models, "tiny-cloud", cloud.version, only=["onnx-fp32"])
        started = rollouts.StartRollout(start, timeout=10)
        assert started.rollout.rollout_id


def test_device_benchmarks_are_checked_bounded_and_never_re_sign(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        version = add_tiny(admin, tmp_path, "tiny", 8)
        _build(models, "tiny", version)
        a = _enroll(ctl, admin, tmp_path, "cam-a")
        channel = device_channel(a.controller, Credentials.load(tmp_path / "cam-a"), 4 << 20)
        device = updates_pb2_grpc.UpdateServiceStub(channel)
        listing = device.ListBenchCandidates(
            updates_pb2.ListBenchCandidatesRequest(model="tiny"), timeout=10
        )
        ids = [c.variant_id for c in listing.candidates]
        assert len(ids) >= 2, ids
        metadata_dir = ctl.config.data_dir / "tuf" / "metadata"
        files_before, targets_json = sorted(metadata_dir.iterdir()), _targets_json(ctl)
        before = ctl.models.variants("tiny", version).selections

        def report(
            fast: str, median: float = 1.0, p95: float = 2.0
        ) -> updates_pb2.ReportBenchmarksResponse:
            results = [
                updates_pb2.BenchResult(variant_id=i, ok=True,
                                        latency_median_ms=median if i == fast else 50.0,
                                        latency_p95_ms=p95 if i == fast else 60.0)
                for i in ids
            ]  # fmt: skip
            return device.ReportBenchmarks(
                updates_pb2.ReportBenchmarksRequest(results=results), timeout=10
            )

        # not measurements: refused whole, one line naming the variant, nothing stored
        for median, p95 in ((float("inf"), float("inf")), (float("nan"), 1.0), (-1.0, 1.0),
                            (0.0, 0.0), (1e12, 1e12), (5.0, 1.0)):  # fmt: skip
            with pytest.raises(grpc.RpcError) as err:
                report(ids[1], median, p95)
            assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT, (median, p95)
            assert ids[1] in err.value.details() and "\n" not in err.value.details()
        assert ctl.models.variants("tiny", version).selections == before

        # 60 reports that keep moving the recommendation: a bounded number accepted, the rest
        # RESOURCE_EXHAUSTED; the signed metadata never changes (the recommendation is not signed)
        answers: list[str] = []
        for n in range(60):
            try:
                answers.append("ok" if report(ids[n % 2]).reselected else "same")
            except grpc.RpcError as exc:
                assert status_code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                answers.append("bounded")
        accepted = [x for x in answers if x != "bounded"]
        assert 0 < len(accepted) <= 10 and answers[-1] == "bounded", answers
        assert "ok" in accepted  # device numbers still move the recommendation
        assert ctl.models.variants("tiny", version).selections != before
        assert sorted(metadata_dir.iterdir()) == files_before  # not one metadata file more
        assert _targets_json(ctl) == targets_json
        channel.close()


def test_a_rebuild_naming_variants_it_cannot_build_changes_nothing(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        version = add_tiny(admin, tmp_path, "tiny", 8)
        _build(stub, "tiny", version, only=["onnx-fp32"])
        signed, targets_json = _signed(ctl, "models/tiny/"), _targets_json(ctl)
        assert signed
        listed = ctl.models.list_models()
        # names no build knows, and LiteRT names with TFLite switched off: refused up front
        refused = {
            "bogus": ("unknown variant bogus", "known: onnx-fp32"),
            "tflite-fp32": ("tflite-fp32", "--no-tflite"),
        }
        for name, words in refused.items():
            with pytest.raises(grpc.RpcError) as err:
                _build(stub, "tiny", version, only=[name], rebuild=True)
            assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert all(w in err.value.details() for w in words), err.value.details()
        assert _signed(ctl, "models/tiny/") == signed
        assert _targets_json(ctl) == targets_json
        assert ctl.models.list_models() == listed  # no empty version registered either
        cli = edgefleet_cli(ctl.config.data_dir, "model", "build", f"tiny:{version}",
                            "--rebuild", "--variants", "onnx-fp32,bogus", check=False)  # fmt: skip
        lines = cli.stderr.strip().splitlines()
        assert cli.returncode != 0 and len(lines) == 1, cli.stderr
        assert "unknown variant bogus" in lines[0] and "known: onnx-fp32" in lines[0]
        assert _targets_json(ctl) == targets_json
