"""`edgefleet demo` tells its stories on the Fashion-MNIST workload: the files each story needs
are there, the stories point at them, the README's walk-through names files that exist, and
the small pieces the stories are made of (timed steps, results parsing) behave. The demo itself
is not run here (it takes minutes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import pytest

from controller.config import ControllerConfig
from controller.demo import context, inference, models, rollouts
from controller.demo.context import FASHION, DemoFailed, DemoRun, Workload
from edgefleet.modelmeta import Preprocessing
from tests.conftest import REPO


def test_the_fashion_workload_has_every_file_the_stories_need() -> None:
    assert FASHION.edge_onnx.parent == REPO / "examples" / "fashion"
    FASHION.require()  # raises DemoFailed naming what is missing
    assert (FASHION.edge_model, FASHION.cloud_model) == ("fashion-edge", "fashion-cloud")


def test_the_model_stories_run_on_the_fashion_workload() -> None:
    for story in (models, inference, rollouts):
        assert story.FASHION is FASHION, story.__name__
        source = Path(cast(str, story.__file__)).read_text()
        assert "digits" not in source.lower(), f"{story.__name__} still mentions digits"
    assert rollouts.MODEL == "fashion-ota"


@pytest.mark.parametrize(
    ("model", "preprocess", "channels"),
    [
        (FASHION.edge_onnx, FASHION.edge_preprocess, 1),  # the greyscale frame as it is
        (FASHION.cloud_onnx, FASHION.cloud_preprocess, 3),  # replicated for EfficientNet-Lite0
    ],
)
def test_each_model_gets_the_preprocessing_its_input_wants(
    model: Path, preprocess: Path, channels: int
) -> None:
    pre = Preprocessing.from_file(preprocess)
    (inp,) = onnx.load(str(model), load_external_data=False).graph.input
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    assert pre.layout == "NCHW" and pre.channels == channels
    assert [pre.channels, *pre.size] == shape


def test_the_inference_story_can_split_the_corrupted_test_frames_into_shares() -> None:
    with np.load(FASHION.test_corrupted) as data:
        x, y = data["x"], data["y"]
    assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and len(x) == len(y) >= 300
    assert float(inference.OFFLOAD_BUDGET) == pytest.approx(0.25)
    assert float(inference.FPS) > 0  # paced: the cloud answers within the offload deadline


def test_the_readme_walk_through_uses_files_of_the_fashion_workload() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## A walk through by hand", 1)[1].split("```sh", 1)[1].split("```")[0]
    assert "D=examples/fashion" in block
    used = set(re.findall(r"\$D/([\w.]+)", block))
    assert {"edge.onnx", "cloud.onnx", "edge_preprocess.json", "cloud_preprocess.json"} <= used
    for name in used:
        assert (REPO / "examples" / "fashion" / name).exists(), name
    assert "--cloud-for fashion-edge" in block


def test_require_names_every_missing_file(tmp_path: Path) -> None:
    (tmp_path / "edge.onnx").write_bytes(b"")
    workload = Workload.in_examples("fashion", "edge_preprocess.json", "cloud_preprocess.json")
    moved = Workload(**{**workload.__dict__, "edge_onnx": tmp_path / "edge.onnx",
                        "cloud_onnx": tmp_path / "cloud.onnx"})  # fmt: skip
    moved.require(moved.edge_onnx)
    with pytest.raises(DemoFailed, match=r"cloud\.onnx"):
        moved.require(moved.edge_onnx, moved.cloud_onnx)


def test_steps_are_timed_and_the_slowest_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter([10.0, 12.5, 42.5])
    monkeypatch.setattr(context.time, "monotonic", lambda: next(clock))
    demo = DemoRun(root=tmp_path, config=ControllerConfig(data_dir=tmp_path))
    demo.step("first")
    demo.step("second")
    demo.print_durations()
    assert demo.durations == [("first", 2.5), ("second", 30.0)]
    out = capsys.readouterr().out
    assert "[2.5 s]" in out and "2 steps, 32 s in steps" in out
    assert out.index("30.0 s  second") < out.index("2.5 s  first")


def test_answers_are_read_by_frame_position(tmp_path: Path) -> None:
    rows = [
        {"frame_id": "share.npy:1", "label": 4, "edge_label": 6, "source": "cloud",
         "offloaded": True},
        {"frame_id": "share.npy:0", "label": 2, "edge_label": 2, "source": "edge",
         "offloaded": False},
        {"frame_id": "share.npy:2", "label": 3, "edge_label": 3, "source": "edge",
         "offloaded": True},  # a failed offload keeps the local answer
    ]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = inference.Answers.read(path, 4)
    assert answers.label.tolist() == [2, 4, 3, -1]
    assert answers.edge_label.tolist() == [2, 6, 3, -1]
    assert answers.by_cloud.tolist() == [False, True, False, False]
    assert answers.offloaded.tolist() == [False, True, True, False]


def test_the_bench_step_names_each_selection_the_device_changed() -> None:
    def sel(variant: str, ms: float, source: str) -> dict[str, Any]:
        return {"variant": variant, "latency_ms": ms, "latency_source": source}

    before = {
        "x86-64-vnni": sel("tflite-fp16", 0.04422, "controller-estimate"),
        "arm64-a72": sel("tflite-fp32", 0.04373, "controller-estimate"),
    }
    after = {
        "x86-64-vnni": sel("tflite-fp32", 0.031, "device"),
        "arm64-a72": sel("tflite-fp32", 0.04373, "controller-estimate"),
    }
    assert models.selection_changes(before, after) == [
        "x86-64-vnni: tflite-fp16 (0.04422 ms, controller-estimate) -> tflite-fp32 (0.031 ms, "
        "device)"
    ]
    assert models.selection_changes(before, before) == []


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (0.937, "inside the interval"),
        (0.862, "OUTSIDE the interval (below it)"),
        (0.99, "OUTSIDE the interval (above it)"),
    ],
)
def test_the_estimate_says_whether_a_value_is_inside_its_interval(value: float, said: str) -> None:
    assert inference.where_in(value, 0.895, 0.974) == said


def test_the_inference_caption_calls_its_pacing_an_upper_bound() -> None:
    source = Path(cast(str, inference.__file__)).read_text()
    assert "paced at up to {FPS} frames/s" in source
    assert "pack-model" not in source  # the agents run the selected, signed variants


def test_rollout_status_rounds_the_gate_table_only() -> None:
    from controller.cli import rollouts as cli_rollouts

    gate = {"value": 0.7954714285714289, "low": None, "high": None}
    assert cli_rollouts._value(gate) == "0.7955"
    assert cli_rollouts._number(5.792746153846154) == "5.793"
    assert cli_rollouts._number(0.0) == "0" and cli_rollouts._number(3) == 3
