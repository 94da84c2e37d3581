"""The OpenVINO variants of examples/digits: built (one ONNX file each, runtime "openvino"),
measured against the ONNX Runtime baseline, selectable only for profiles that list OpenVINO;
skipped with a reason, never failed, when OpenVINO is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from controller.optimize.evaluate import MeasureConfig
from controller.optimize.openvino_variants import (
    OPENVINO_BF16,
    OPENVINO_FP32,
    OPENVINO_INT8,
    OPENVINO_VARIANTS,
)
from controller.optimize.pipeline import BUILT, SKIPPED, BuildOptions, build_model
from controller.optimize.runners import OpenVinoRunner, OrtRunner, sha256_file
from controller.optimize.select import select_variants
from controller.optimize.source import SourceModel, load_preprocessing
from controller.services.model_build import variant_names
from edgefleet.modelmeta import METADATA_FILE, VariantMetadata
from edgefleet.profiles import BUILTIN_PROFILES, ProfileCatalogue

pytest.importorskip("openvino")

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
FAST = MeasureConfig(warmup=1, runs=6, rounds=2, max_rounds=2, min_round_ms=2.0)
WANTED = ("x86-64-vnni", "x86-64-vnni-openvino", "x86-64-bf16-openvino")
PROFILES = [p for p in BUILTIN_PROFILES if p.name in WANTED]


def _digits() -> SourceModel:
    return SourceModel.from_files(
        DIGITS / "edge.onnx",
        "digits-edge",
        1,
        load_preprocessing(DIGITS / "preprocess.json"),
        DIGITS / "validation.npz",
        DIGITS / "calibration.npz",
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("build")
    options = BuildOptions(
        measure=FAST, only=("onnx-fp32", *OPENVINO_VARIANTS), calibration_limit=64
    )
    return workdir, build_model(_digits(), PROFILES, workdir, include_tflite=False, options=options)


def test_openvino_variants_are_built_as_one_onnx_file_each(report) -> None:  # type: ignore[no-untyped-def]
    workdir, built = report
    assert [r.variant for r in built.results] == ["onnx-fp32", *OPENVINO_VARIANTS]
    source = _digits()
    x, y = source.validation_inputs(), source.validation_y
    for name, precision in (
        (OPENVINO_FP32, "fp32"),
        (OPENVINO_BF16, "bf16"),
        (OPENVINO_INT8, "int8"),
    ):
        result = built.result(name)
        assert result.status == BUILT, result.reason
        meta = VariantMetadata.from_json((workdir / name / METADATA_FILE).read_text())
        assert meta == result.metadata
        assert meta.runtime == "openvino" and meta.precision == precision
        assert meta.file == "model.onnx" and meta.sha256 == sha256_file(workdir / name / meta.file)
        assert {p.name for p in (workdir / name).iterdir()} == {METADATA_FILE, "model.onnx"}
        ev = result.evaluation
        assert ev is not None and ev.runtime == "openvino"
        assert set(ev.latency) == {2} and ev.latency[2].baseline_median_ms > 0  # profiles: 2
        assert ev.accuracy_drop_pp <= 2.0 and ev.agreement >= 0.97
        runner = OpenVinoRunner(workdir / name / meta.file, 1, precision)
        predicted = runner.run(x[:200]).argmax(axis=1)
        assert float(np.mean(predicted == y[:200])) >= 0.9
    fp32 = OpenVinoRunner(workdir / OPENVINO_FP32 / "model.onnx", 2).run(x[:50])
    reference = OrtRunner(DIGITS / "edge.onnx").run(x[:50])
    np.testing.assert_allclose(fp32, reference, rtol=1e-4, atol=1e-4)


def test_only_profiles_listing_openvino_may_select_it(report) -> None:  # type: ignore[no-untyped-def]
    _, built = report
    plain, with_openvino = built.selections["x86-64-vnni"], built.selections["x86-64-vnni-openvino"]
    assert plain.variant == "onnx-fp32"
    for name in OPENVINO_VARIANTS:
        assert plain.rejected[name].startswith("runtime openvino not on this profile")
        assert not with_openvino.rejected.get(name, "").startswith("runtime")
    assert with_openvino.variant in ("onnx-fp32", OPENVINO_FP32, OPENVINO_INT8)
    assert with_openvino.rejected[OPENVINO_BF16].startswith("precision bf16 not supported")
    bf16 = built.selections["x86-64-bf16-openvino"]
    assert not bf16.rejected.get(OPENVINO_BF16, "").startswith(("runtime", "precision"))
    # Chosen by measurement: where OpenVINO is measured clearly faster (here as devices of
    # each profile report it) it wins the profile that can run it, and only that one.
    evaluations = [r.evaluation for r in built.results if r.evaluation is not None]
    measured = {"onnx-fp32": 0.05, OPENVINO_FP32: 0.01, OPENVINO_BF16: 0.003, OPENVINO_INT8: 0.04}
    chosen = select_variants(
        evaluations, PROFILES, device_latencies=dict.fromkeys(WANTED, measured)
    )
    assert chosen["x86-64-bf16-openvino"].variant == OPENVINO_BF16
    assert chosen["x86-64-vnni-openvino"].variant == OPENVINO_FP32
    assert chosen["x86-64-vnni"].variant == "onnx-fp32"
    # Without VNNI int8 weights need reduce_range: the full-range QDQ model is not taken.
    avx2 = ProfileCatalogue.load().get("x86-64-avx2-openvino")
    assert "reduce_range" in select_variants(evaluations, [avx2])[avx2.name].rejected[OPENVINO_INT8]


def test_variant_names_know_openvino() -> None:
    assert set(OPENVINO_VARIANTS) <= set(variant_names())


def test_missing_openvino_skips_the_variants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    options = BuildOptions(measure=FAST, only=OPENVINO_VARIANTS)
    built = build_model(_digits(), PROFILES, tmp_path, include_tflite=False, options=options)
    for name in OPENVINO_VARIANTS:
        result = built.result(name)
        assert result.status == SKIPPED and "OpenVINO is not installed" in result.reason
        assert not (tmp_path / name).exists()
    assert built.selections["x86-64-vnni-openvino"].variant is None
