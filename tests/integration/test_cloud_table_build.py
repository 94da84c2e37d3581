"""`model build` measures each variant's cloud-by-edge-confidence table when a cloud model is
registered for the edge model (real controller, real build, the operator CLI), and the
accuracy estimate reads it by variant id; without a cloud model `model variants` says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.monitoring.estimate import table_summary
from edgefleet.v1 import models_pb2, models_pb2_grpc
from tests.fleet import controller_with_admin, edgefleet_cli
from tests.integration.test_model_releases import _build, _files, _upload
from tests.rollout_fleet import add_tiny

pytestmark = pytest.mark.timeout(300)


def test_build_records_the_cloud_table_and_variants_show_it(tmp_path: Path) -> None:
    with controller_with_admin(tmp_path / "controller") as (ctl, admin):
        models = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        data_dir = ctl.config.data_dir
        plain = add_tiny(admin, tmp_path, "lonely", 8)  # no cloud model registered for it
        _build(models, "lonely", plain, only=["onnx-fp32"])
        text = edgefleet_cli(data_dir, "model", "variants", f"lonely:{plain}").stdout
        assert "cloud by edge confidence: not measured" in text

        edge = add_tiny(admin, tmp_path, "tiny", 8)
        onnx, val = _files(tmp_path)  # a wider tiny CNN as the cloud model
        onnx_sha = _upload(models, onnx.read_bytes())
        models.AddModel(
            models_pb2.AddModelRequest(name="tiny-cloud", onnx_sha256=onnx_sha,
                                       validation_sha256=_upload(models, val), cloud_for="tiny"),
            timeout=30,
        )  # fmt: skip
        _build(models, "tiny", edge, only=["onnx-fp32"])
        data = json.loads(
            edgefleet_cli(data_dir, "model", "variants", f"tiny:{edge}", "--format", "json").stdout
        )
        (variant,) = [v for v in data["variants"] if v["status"] == "built"]
        summary = variant["cloud_by_confidence"]
        assert summary["cloud_model"].startswith("tiny-cloud:") and summary["frames"] == 32
        assert summary["hard_frames"] + summary["confident_frames"] == 32
        table = ctl.telemetry.accuracy.table(variant["variant_id"])
        assert table is not None and sum(c.n for c in table.bins.values()) == 32
        assert table_summary(table) == summary
        # the edge answers its own labels (self-labelled validation): right on every frame
        assert all(c.edge_correct == c.n for c in table.bins.values())
        text = edgefleet_cli(data_dir, "model", "variants", f"tiny:{edge}").stdout
        assert "least confident" in text
