"""The build's trained variants on the digits example: QAT int8 (QDQ, integer kernels in ONNX
Runtime), channel pruning (fewer channels in the ONNX), reduced resolution (metadata size,
measured at that size, run by the agent from a full-size frame), skipped without torch, QAT
skipped when post-training int8 is within budget, and selection treating them as variants."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from controller.optimize.evaluate import MeasureConfig
from controller.optimize.latency import Latency
from controller.optimize.pipeline import BUILT, SKIPPED, BuildOptions, BuildReport, build_model
from controller.optimize.runners import OrtRunner
from controller.optimize.select import select_variants
from controller.optimize.source import SourceModel, load_preprocessing, preprocess
from controller.optimize.trained_variants import QAT, TRAINING_KEY, TrainedOptions
from edgefleet.profiles import BUILTIN_PROFILES

pytest.importorskip("torch")

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
FAST = MeasureConfig(warmup=1, runs=3, rounds=1, max_rounds=1, max_threads=1)
# A few epochs on the 200 calibration frames (self-distillation: digits ships no train split).
TRAIN = TrainedOptions(
    qat="always",
    channel_percents=(50,),
    resolution_percents=(50,),
    finetune_epochs=3,
    finetune_seconds=6.0,
    learning_rate=3e-3,
)
PROFILE = [p for p in BUILTIN_PROFILES if p.name == "x86-64-vnni"]


def _source() -> SourceModel:
    return SourceModel.from_files(
        DIGITS / "edge.onnx",
        "digits",
        1,
        load_preprocessing(DIGITS / "preprocess.json"),
        DIGITS / "validation.npz",
        DIGITS / "calibration.npz",
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    options = BuildOptions(
        measure=FAST,
        only=(QAT, "onnx-channels-50", "onnx-res-50"),
        trained=TRAIN,
        calibration_limit=64,
    )
    return build_model(
        _source(), PROFILE, tmp_path_factory.mktemp("build"), options=options, include_tflite=False
    )


def _conv_weights(path: Path) -> list[tuple[int, ...]]:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    shapes = []
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            shapes.append(tuple(inits[node.input[1]].dims))
    return shapes


def test_qat_variant_is_qdq_int8_that_onnx_runtime_runs_with_integer_kernels(
    report: BuildReport,
) -> None:
    result = report.result(QAT)
    assert result.status == BUILT, result.reason
    assert result.metadata is not None and result.evaluation is not None
    model = onnx.load(str(Path(result.directory) / result.metadata.file))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 7 and ops.count("DequantizeLinear") >= 14
    int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 7  # every Conv's and the Gemm's weights stored as int8
    assert "QLinearConv" in result.metadata.extra["integer_kernels"]
    assert result.evaluation.accuracy_drop_pp <= 3.0
    training = result.metadata.extra[TRAINING_KEY]
    assert training["data"].startswith("calibration frames")  # never the validation set
    assert set(training["wall_seconds"]) >= {"convert", "calibrate", "fine_tune", "export"}


def test_channel_pruned_variant_has_fewer_channels_and_is_measured(report: BuildReport) -> None:
    result = report.result("onnx-channels-50")
    assert result.status == BUILT, result.reason
    assert result.metadata is not None and result.evaluation is not None
    source = _conv_weights(DIGITS / "edge.onnx")
    pruned = _conv_weights(Path(result.directory) / result.metadata.file)
    assert len(pruned) == len(source)
    assert sum(s[0] for s in pruned) < 0.75 * sum(s[0] for s in source)
    assert all(p[0] <= s[0] for p, s in zip(pruned, source, strict=True))
    training = result.metadata.extra[TRAINING_KEY]
    assert training["conv_channels_after"] < training["conv_channels_before"]
    assert result.evaluation.latency[1].median_ms > 0
    assert 0.0 < result.evaluation.accuracy <= 1.0


def test_resolution_variant_declares_and_is_measured_at_its_size(report: BuildReport) -> None:
    result = report.result("onnx-res-50")
    assert result.status == BUILT, result.reason
    meta, ev = result.metadata, result.evaluation
    assert meta is not None and ev is not None
    assert tuple(meta.preprocessing.size) == (16, 16)
    assert tuple(meta.input_shape) == (-1, 1, 16, 16)
    model = onnx.load(str(Path(result.directory) / meta.file))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [1, 16, 16]
    assert ev.accuracy > 0.3  # measured on 16x16 frames (a 32x32 tensor would not even run)
    assert meta.extra["source_size"] == [32, 32]


def test_agent_runs_the_resolution_variant_on_a_full_size_frame(report: BuildReport) -> None:
    from agent.runtime.model import load_variant

    result = report.result("onnx-res-50")
    loaded = load_variant(result.directory, threads=1)
    val = np.load(DIGITS / "validation.npz")
    frames, labels = val["x"][:60], val["y"][:60]
    assert frames.shape[1:] == (32, 32)
    answers = np.asarray([int(np.argmax(loaded.infer_frame(frame))) for frame in frames])
    meta = result.metadata
    assert meta is not None
    built = OrtRunner(Path(result.directory) / meta.file).run(
        preprocess(frames, meta.preprocessing)
    )
    assert np.mean(answers == built.argmax(1)) >= 0.98  # the agent resizes as the build measured
    assert np.mean(answers == labels) > 0.3  # 10 classes: well above chance


def test_trained_variants_are_skipped_with_the_reason_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    options = BuildOptions(
        measure=FAST, only=(QAT, "onnx-channels-50", "onnx-res-50"), trained=TRAIN
    )
    report = build_model(_source(), PROFILE, tmp_path, options=options, include_tflite=False)
    for name in (QAT, "onnx-channels-50", "onnx-res-50"):
        result = report.result(name)
        assert result.status == SKIPPED
        assert "train extra" in result.reason and "torch" in result.reason


def test_auto_qat_is_skipped_when_post_training_int8_is_within_budget(tmp_path: Path) -> None:
    options = BuildOptions(
        measure=FAST,
        only=("onnx-int8-static", QAT),
        trained=replace(TRAIN, qat="auto"),
        calibration_limit=64,
    )
    report = build_model(_source(), PROFILE, tmp_path, options=options, include_tflite=False)
    static = report.result("onnx-int8-static")
    assert static.status == BUILT and static.evaluation is not None
    qat = report.result(QAT)
    assert qat.status == SKIPPED
    assert "within the accuracy budget" in qat.reason


def test_selection_rejects_a_resolution_variant_over_budget_and_lets_one_within_win(
    report: BuildReport,
) -> None:
    ev = report.result("onnx-res-50").evaluation
    assert ev is not None

    def timed(name: str, ratio: float, drop: float) -> object:
        latency = Latency(1, ratio, ratio * 1.1, 1.0, 1.1, (ratio * 0.99, ratio, ratio * 1.01))
        return replace(ev, variant=name, accuracy_drop_pp=drop, latency={1: latency})

    fp32 = timed("onnx-fp32", 1.0, 0.0)
    over = timed("onnx-res-50", 0.3, 2.5)  # fastest, but loses 2.5 pp
    within = timed("onnx-res-75", 0.6, 0.4)
    selections = select_variants([fp32, over, within], PROFILE, accuracy_budget_pp=1.0)  # type: ignore[list-item]
    chosen = selections[PROFILE[0].name]
    assert chosen.variant == "onnx-res-75"
    assert "accuracy" in chosen.rejected["onnx-res-50"]
    assert chosen.rejected["onnx-fp32"]


def test_fine_tuning_data_is_the_training_frames_when_given_else_the_calibration_frames() -> None:
    from controller.training.data import Frames
    from controller.training.errors import TrainingUnavailable
    from controller.training.finetune import SELF_DISTILLATION, TRAINING_FRAMES, FinetuneData

    val = np.load(DIGITS / "validation.npz")
    cal = np.load(DIGITS / "calibration.npz")
    training = Frames(cal["x"], cal["y"])
    drawn = FinetuneData.of(val["x"], training, max_frames=50)
    assert drawn.labelled and drawn.description == TRAINING_FRAMES and len(drawn.frames) == 50
    assert all(any((f == c).all() for c in cal["x"]) for f in drawn.frames.x[:5])
    own = FinetuneData.of(cal["x"], None, max_frames=50)
    assert not own.labelled and own.description == SELF_DISTILLATION
    assert len(own.frames) == len(cal["x"])  # every calibration frame, labels from the source
    with pytest.raises(TrainingUnavailable, match="--train-data"):
        FinetuneData.of(cal["x"].astype(np.float32) / 255, None, max_frames=50)


def test_the_cloud_table_is_measured_for_a_resolution_variant_at_its_own_size(
    report: BuildReport,
) -> None:
    from controller.services.cloud_tables import measure_tables
    from controller.services.model_views import CloudModelInfo

    cloud = CloudModelInfo(
        "digits-cloud", 1, DIGITS / "cloud.onnx", load_preprocessing(DIGITS / "preprocess.json"),
        tuple((DIGITS / "labels.txt").read_text().split()),
    )  # fmt: skip
    tables = measure_tables(_source(), [report.result("onnx-res-50")], cloud)
    assert "onnx-res-50" in tables  # it ran on validation frames at its 16 x 16 input
