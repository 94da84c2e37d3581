"""The real workload through every stage: the Fashion-MNIST student is built into ONNX Runtime
and LiteRT variants measured on 2000 validation images, the agent runs what was built with the
variant's own preprocessing, and an enrolled agent offloads its hard frames over mutual TLS to
the EfficientNet-Lite0 teacher served by a real controller."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.assembly import AgentConfig, build_agent
from agent.enroll import enroll
from agent.hardware import detect
from agent.inference.agent import Result
from agent.pack import pack_model
from agent.runtime.model import load_variant
from controller.app import Controller
from controller.optimize.evaluate import MeasureConfig
from controller.optimize.pipeline import BuildOptions, BuildReport, build_model
from controller.optimize.runners import open_runner
from controller.optimize.source import SourceModel, load_preprocessing
from controller.optimize.tflite_variants import Onnx2TfConfig, onnx2tf_python
from edgefleet.profiles import BUILTIN_PROFILES
from tests.conftest import REPO
from tests.fleet import Admin, start_controller
from tests.unit.test_build_pipeline import _onnx2tf_python

FASHION = REPO / "examples" / "fashion"
HAVE_TFLITE = _onnx2tf_python() is not None
VARIANTS = ("onnx-fp32", "onnx-int8-static", "tflite-fp32", "tflite-int8")


def fashion_source(model: str = "edge") -> SourceModel:
    return SourceModel.from_files(
        FASHION / f"{model}.onnx",
        f"fashion-{model}",
        1,
        load_preprocessing(FASHION / f"{model}_preprocess.json"),
        FASHION / "validation.npz",
        FASHION / "calibration.npz",
        labels=tuple((FASHION / "labels.txt").read_text().splitlines()),
    )


@pytest.fixture(scope="module")
def student_build(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    python = _onnx2tf_python()
    options = BuildOptions(
        measure=MeasureConfig(runs=10, thread_counts=(1,)),
        onnx2tf=Onnx2TfConfig(python=python, calibration_limit=200),
        only=VARIANTS,
        static_reduce_range=(False,),
    )
    return build_model(
        fashion_source(),
        BUILTIN_PROFILES,
        tmp_path_factory.mktemp("fashion-build"),
        include_tflite=python is not None and onnx2tf_python(options.onnx2tf) is not None,
        options=options,
    )


def test_student_variants_keep_their_accuracy_on_2000_images(student_build: BuildReport) -> None:
    built = {r.variant: r for r in student_build.built()}
    expected = set(VARIANTS) if HAVE_TFLITE else {v for v in VARIANTS if v.startswith("onnx")}
    assert expected <= set(built), {r.variant: r.reason for r in student_build.results}
    assert student_build.source_accuracy >= 0.88
    for name in expected:
        evaluation = built[name].evaluation
        assert evaluation is not None
        assert evaluation.accuracy_drop_pp <= 1.0, (name, evaluation.accuracy_drop_pp)
        assert evaluation.agreement >= 0.97
    if HAVE_TFLITE:
        assert student_build.selections["int8-npu"].variant == "tflite-int8"


@pytest.mark.parametrize("variant", ["onnx-int8-static", "tflite-int8"])
def test_the_agent_runs_what_the_build_measured(student_build: BuildReport, variant: str) -> None:
    if variant.startswith("tflite") and not HAVE_TFLITE:
        pytest.skip("LiteRT toolchain (scripts/tflite-venv.sh) not installed")
    result = student_build.result(variant)
    assert result.metadata is not None
    directory = Path(result.directory)
    model = load_variant(directory, threads=1)
    with np.load(FASHION / "validation.npz") as data:
        x, y = data["x"][:300], data["y"][:300]
    on_device = np.array([int(model.infer_frame(frame).argmax()) for frame in x])
    source = fashion_source()
    tensors = source.validation_inputs()[:300]
    if result.metadata.preprocessing.layout == "NHWC":
        tensors = np.ascontiguousarray(tensors.transpose(0, 2, 3, 1))
    runner = open_runner(directory / result.metadata.file, result.metadata.runtime, 1)
    on_controller = runner.run(tensors).argmax(axis=1)
    assert float((on_device == on_controller).mean()) >= 0.99
    assert float((on_device == y).mean()) >= 0.85


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = start_controller(
        tmp_path / "controller",
        cloud_models=(f"fashion={FASHION / 'cloud.onnx'}:{FASHION / 'cloud_preprocess.json'}",),
    )
    yield c
    c.stop()


def test_agent_offloads_hard_frames_to_the_teacher(controller: Controller, tmp_path: Path) -> None:
    variant = tmp_path / "variant"
    pack_model(
        FASHION / "edge.onnx", FASHION / "edge_preprocess.json", variant,
        FASHION / "labels.txt", "fashion",
    )  # fmt: skip
    with np.load(FASHION / "test_corrupted.npz") as data:
        x, y = data["x"][:400], data["y"][:400]
    np.savez(tmp_path / "frames.npz", x=x, y=y)
    admin = Admin(controller)
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
    finally:
        admin.close()
    results: list[Result] = []
    daemon = build_agent(
        AgentConfig(
            data_dir=tmp_path / "cam", model_dir=variant, source=str(tmp_path / "frames.npz"),
            offload_budget=0.25, offload_deadline_s=5.0, telemetry_interval_s=1.0,
        ),
        listeners=[lambda e: results.append(e) if isinstance(e, Result) else None],
    )  # fmt: skip
    assert daemon.inference is not None
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert daemon.inference.done.wait(120)
    finally:
        daemon.stopping.set()
        thread.join(15)
    by_index = {int(r.frame_id.rsplit(":", 1)[1]): r for r in results}
    assert sorted(by_index) == list(range(len(x)))
    offloaded = [i for i, r in by_index.items() if r.source == "cloud" and not r.audited]
    assert 0.1 <= len(offloaded) / len(x) <= 0.4
    # The frames the edge model was unsure of are where the teacher earns its keep: it answers
    # them better than the edge model did, so the cascade beats the edge model alone.
    edge_right = sum(by_index[i].edge_label == y[i] for i in offloaded)
    cloud_right = sum(by_index[i].label == y[i] for i in offloaded)
    assert cloud_right >= edge_right + 0.1 * len(offloaded), (cloud_right, edge_right)
    cascade = np.mean([by_index[i].label == y[i] for i in range(len(y))])
    edge_only = np.mean([by_index[i].edge_label == y[i] for i in range(len(y))])
    assert cascade > edge_only, (cascade, edge_only)
