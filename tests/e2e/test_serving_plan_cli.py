"""The serving plan as an operator sees it: a cloud model registered with `model add
--cloud-for`, first loaded by a real device's offload over mutual TLS, measured in the
background, then shown by `model list` and `model variants` (table and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from agent.inference import GrpcOffloadClient, OffloadFrame
from tests.conftest import REPO, wait_until
from tests.fleet import Admin, edgefleet_cli, start_controller

DIGITS = REPO / "examples" / "digits"


def add(data_dir: Path, name: str, onnx: str, *extra: str) -> None:
    edgefleet_cli(
        data_dir,
        "model",
        "add",
        name,
        "--onnx",
        str(DIGITS / onnx),
        "--validation",
        str(DIGITS / "validation.npz"),
        "--labels",
        str(DIGITS / "labels.txt"),
        "--preprocess",
        str(DIGITS / "preprocess.json"),
        *extra,
    )


def test_model_list_and_variants_show_the_measured_serving_plan(tmp_path: Path) -> None:
    data_dir = tmp_path / "controller"
    ctl = start_controller(data_dir)
    admin = Admin(ctl)
    client = None
    try:
        add(data_dir, "digits", "edge.onnx")
        add(data_dir, "digits-cloud", "cloud.onnx", "--cloud-for", "digits")
        before = edgefleet_cli(data_dir, "model", "variants", "digits-cloud").stdout
        assert "serving plan: not served yet" in before

        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
        channel = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 1 << 20
        )
        client = GrpcOffloadClient(channel, use_streams=False)
        frame = np.zeros((32, 32), np.uint8)
        answer = client.offload(
            OffloadFrame("digits", "digits:1:onnx-fp32", "f1", frame, 0, 0.4), timeout_s=10
        )
        assert answer.model_id == "digits-cloud:1"  # answered at once, while it is measured

        def plan() -> dict[str, object] | None:
            rows = json.loads(edgefleet_cli(data_dir, "model", "list", "--format", "json").stdout)
            cloud = next(r for r in rows if r["name"] == "digits-cloud")
            edge = next(r for r in rows if r["name"] == "digits")
            assert edge["serving_plan"] is None
            served = cloud["serving_plan"]
            return served if served and served["source"] == "measured" else None

        assert wait_until(plan, 20.0, 0.5), "the serving plan was never measured"
        measured = plan()
        assert measured is not None
        batches = measured["batches"]
        assert isinstance(batches, list) and batches[0]["batch_size"] == 1
        assert all(b["frames_per_s"] > 0 and b["rounds"] >= 1 for b in batches)
        assert measured["edge_model"] == "digits" and "frames/s" in str(measured["reason"])

        table = edgefleet_cli(data_dir, "model", "list").stdout
        assert "serving" in table and str(measured["summary"]) in table
        variants = edgefleet_cli(data_dir, "model", "variants", "digits-cloud").stdout
        assert f"serving plan: {measured['summary']}" in variants
        assert "x batch 1" in variants and str(measured["reason"])[:40] in variants
        as_json = json.loads(
            edgefleet_cli(data_dir, "model", "variants", "digits-cloud", "--format", "json").stdout
        )
        assert as_json["model"]["serving_plan"]["summary"] == measured["summary"]
        # later offloads are answered on the measured plan
        again = client.offload(
            OffloadFrame("digits", "digits:1:onnx-fp32", "f2", frame, 0, 0.4), timeout_s=10
        )
        assert again.model_id == "digits-cloud:1"
    finally:
        if client is not None:
            client.close()
        admin.close()
        ctl.stop()
