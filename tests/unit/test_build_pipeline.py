"""build_model end to end on a tiny model: files, report, selections, skipped variants."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from controller.config import ONNX2TF_ENV, ToolchainSearch, discover_onnx2tf
from controller.optimize.errors import VariantUnavailable
from controller.optimize.evaluate import MeasureConfig
from controller.optimize.onnx_variants import VariantSpec
from controller.optimize.pipeline import SKIPPED, BuildOptions, _Builder, build_model
from controller.optimize.runners import LiteRtRunner, sha256_file
from controller.optimize.source import SourceModel, load_preprocessing
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from controller.optimize.tflite_variants import (
    TFLITE_MISSING,
    TFLITE_NOT_REQUESTED,
    Onnx2TfConfig,
    Onnx2TfConversion,
    build_tflite,
    onnx2tf_python,
)
from edgefleet.modelmeta import METADATA_FILE, Preprocessing, VariantMetadata
from edgefleet.profiles import BUILTIN_PROFILES

PRE = Preprocessing(size=(32, 32), channels=1)
FAST = MeasureConfig(warmup=1, runs=3, max_threads=1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceModel:
    path = make_tiny_cnn(tmp_path_factory.mktemp("src") / "tiny.onnx", width=16)
    frames = synthetic_frames(48)
    return SourceModel.create(path, "tiny", 1, PRE, frames, self_labels(path, frames, PRE))


def test_build_writes_variants_report_and_selections(source: SourceModel, tmp_path: Path) -> None:
    phases: list[tuple[str, str]] = []
    options = BuildOptions(
        measure=FAST,
        only=("onnx-fp32", "onnx-int8-static", "onnx-int8-mixed", "tflite-int8"),
        onnx2tf=Onnx2TfConfig(available=False),
        mixed="always",
        calibration_limit=16,
    )
    report = build_model(
        source,
        BUILTIN_PROFILES,
        tmp_path,
        options=options,
        progress=lambda v, p: phases.append((v, p)),
    )

    assert [r.variant for r in report.results] == [
        "onnx-fp32",
        "onnx-int8-static",
        "onnx-int8-mixed",
        "tflite-int8",
    ]
    assert ("onnx-fp32", "build") in phases and ("onnx-fp32", "built") in phases
    for result in report.built():
        meta = result.metadata
        assert meta is not None and result.evaluation is not None
        folder = tmp_path / result.variant
        assert VariantMetadata.from_json((folder / METADATA_FILE).read_text()) == meta
        assert meta.sha256 == sha256_file(folder / meta.file)
        assert meta.temperature == result.evaluation.temperature
        assert result.evaluation.latency[1].baseline_median_ms > 0
    fp32 = report.result("onnx-fp32").evaluation
    assert fp32 is not None and fp32.accuracy_drop_pp == 0.0 and fp32.agreement == 1.0
    tfl = report.result("tflite-int8")
    assert tfl.status == SKIPPED and tfl.reason == TFLITE_MISSING
    assert not (tmp_path / "tflite-int8").exists()

    assert set(report.selections) == {p.name for p in BUILTIN_PROFILES}
    npu = report.selections["int8-npu"]
    assert npu.variant is None and "runtime onnxruntime" in npu.rejected["onnx-fp32"]
    chosen = report.selections["x86-64-vnni"].variant
    assert chosen in {"onnx-fp32", "onnx-int8-static", "onnx-int8-mixed"}
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report.to_dict()))


def test_mixed_is_skipped_when_full_int8_is_good_enough(
    source: SourceModel, tmp_path: Path
) -> None:
    options = BuildOptions(
        measure=FAST,
        only=("onnx-int8-static", "onnx-int8-mixed"),
        accuracy_budget_pp=100.0,
        calibration_limit=16,
    )
    report = build_model(
        source, BUILTIN_PROFILES[:1], tmp_path, options=options, include_tflite=False
    )
    mixed = report.result("onnx-int8-mixed")
    assert mixed.status == SKIPPED and "within the accuracy budget" in mixed.reason


def test_tflite_skipped_cleanly_without_the_extra(source: SourceModel, tmp_path: Path) -> None:
    for config in (Onnx2TfConfig(available=False), Onnx2TfConfig(python="/nonexistent/python")):
        assert onnx2tf_python(config) is None
        conversion = Onnx2TfConversion(source, config)
        with pytest.raises(VariantUnavailable, match=r"scripts/bootstrap\.sh"):
            build_tflite(source, tmp_path / "t", variant="tflite-fp32", conversion=conversion)
    report = build_model(
        source,
        BUILTIN_PROFILES[:1],
        tmp_path,
        options=BuildOptions(measure=FAST, only=("tflite-fp32",)),
        include_tflite=False,
    )
    assert report.result("tflite-fp32").reason == TFLITE_NOT_REQUESTED


def test_unavailable_and_broken_variants_do_not_stop_the_build(
    source: SourceModel, tmp_path: Path
) -> None:
    def unavailable(src: SourceModel, out: Path) -> VariantMetadata:
        out.mkdir(parents=True)
        raise VariantUnavailable("onnxruntime cannot load it: no kernel")

    def broken(src: SourceModel, out: Path) -> VariantMetadata:
        raise ValueError("boom")

    builder = _Builder(source, tmp_path, BuildOptions(measure=FAST), (1,), lambda v, p: None)
    skipped = builder.run(VariantSpec("odd", "onnxruntime", "fp32", unavailable))
    failed = builder.run(VariantSpec("bad", "onnxruntime", "fp32", broken))
    assert (skipped.status, skipped.reason) == ("skipped", "onnxruntime cannot load it: no kernel")
    assert (failed.status, failed.reason) == ("failed", "ValueError: boom")
    assert not (tmp_path / "odd").exists()


def _onnx2tf_python() -> str | None:
    """The LiteRT toolchain found the way `controller serve` finds it (.venv-tflite, ...)."""
    found = discover_onnx2tf(
        os.environ.get(ONNX2TF_ENV, ""), ONNX2TF_ENV, ToolchainSearch.of_this_process()
    )
    return found.python if found.usable else None


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(_onnx2tf_python() is None, reason=TFLITE_MISSING)
def test_tflite_int8_builds_for_digits_and_runs(tmp_path: Path) -> None:
    digits = Path(os.environ.get("EDGEFLEET_DIGITS_DIR") or REPO / "examples" / "digits")
    if not (digits / "edge.onnx").exists():
        pytest.skip("examples/digits/edge.onnx not generated yet")
    pre = load_preprocessing(digits / "preprocess.json")
    src = SourceModel.from_files(
        digits / "edge.onnx",
        "digits-edge",
        1,
        pre,
        digits / "validation.npz",
        digits / "calibration.npz",
    )
    conversion = Onnx2TfConversion(
        src, Onnx2TfConfig(python=_onnx2tf_python(), calibration_limit=50)
    )
    try:
        meta = build_tflite(src, tmp_path, variant="tflite-int8", conversion=conversion)
    finally:
        conversion.close()
    assert meta.runtime == "litert" and meta.input_dtype == "int8"
    assert meta.preprocessing.layout == "NHWC" and meta.input_shape == (1, 32, 32, 1)
    assert meta.input_quantization is not None and meta.output_quantization is not None
    x = src.validation_inputs()[:100].transpose(0, 2, 3, 1)
    predictions = LiteRtRunner(tmp_path / meta.file).run(x).argmax(axis=1)
    accuracy = float(np.mean(predictions == src.validation_y[:100]))
    assert accuracy > 0.8
