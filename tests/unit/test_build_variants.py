"""Each ONNX variant builder produces a loadable, runnable model with truthful metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from controller.optimize import onnx_variants as ov
from controller.optimize.errors import VariantUnavailable
from controller.optimize.runners import OrtRunner, sha256_file
from controller.optimize.source import SourceModel
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from edgefleet.modelmeta import METADATA_FILE, Preprocessing, VariantMetadata

PRE = Preprocessing(size=(32, 32), channels=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceModel:
    # width 32: ~56k conv/gemm weights, big enough that int8 storage dominates the file
    path = make_tiny_cnn(tmp_path_factory.mktemp("src") / "tiny.onnx", width=32)
    frames = synthetic_frames(64)
    return SourceModel.create(path, "tiny", 2, PRE, frames, self_labels(path, frames, PRE))


@pytest.fixture(scope="module")
def built(
    source: SourceModel, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, VariantMetadata]]:
    root = tmp_path_factory.mktemp("variants")
    specs = ov.onnx_variant_specs(prune_percents=(50,), cluster_counts=(16,), calibration_limit=32)
    return {spec.name: (root / spec.name, spec.build(source, root / spec.name)) for spec in specs}


EXPECTED = [
    "onnx-fp32",
    "onnx-fp16",
    "onnx-int8-dynamic",
    "onnx-int8-static",
    "onnx-int8-static-rr",
    "onnx-pruned-50",
    "onnx-clustered-16",
]


@pytest.mark.parametrize("name", EXPECTED)
def test_variant_builds_runs_and_describes_itself(
    name: str, source: SourceModel, built: dict[str, tuple[Path, VariantMetadata]]
) -> None:
    out_dir, meta = built[name]
    model_file = out_dir / meta.file
    assert meta.variant == name and meta.runtime == "onnxruntime"
    assert meta.variant_id == f"tiny:2:{name}"
    assert meta.size_bytes == model_file.stat().st_size
    assert meta.sha256 == sha256_file(model_file)
    assert VariantMetadata.from_json((out_dir / METADATA_FILE).read_text()) == meta
    logits = OrtRunner(model_file).run(source.validation_inputs())
    assert logits.shape == (64, 10) and np.isfinite(logits).all()


def test_fp32_and_fp16_match_the_source(
    source: SourceModel, built: dict[str, tuple[Path, VariantMetadata]]
) -> None:
    x = source.validation_inputs()
    ref = OrtRunner(source.onnx_path).run(x)
    for name, tol in (("onnx-fp32", 1e-4), ("onnx-fp16", 5e-2)):
        out_dir, meta = built[name]
        np.testing.assert_allclose(OrtRunner(out_dir / meta.file).run(x), ref, atol=tol)


def test_static_int8_is_at_most_035_of_fp32(built: dict[str, tuple[Path, VariantMetadata]]) -> None:
    fp32 = built["onnx-fp32"][1].size_bytes
    int8 = built["onnx-int8-static"][1].size_bytes
    assert int8 <= 0.35 * fp32, (int8, fp32)
    assert built["onnx-int8-static-rr"][1].extra["reduce_range"] is True


def test_pruned_and_clustered_weights(built: dict[str, tuple[Path, VariantMetadata]]) -> None:
    pruned = onnx.load(str(built["onnx-pruned-50"][0] / "model.onnx"))
    clustered = onnx.load(str(built["onnx-clustered-16"][0] / "model.onnx"))
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in pruned.graph.initializer}
    assert abs(float((weights["w2"] == 0).mean()) - 0.5) < 0.01
    assert not (weights["w1"] == 0).any()  # 9 weights per output: too few to prune
    cw = {i.name: onnx.numpy_helper.to_array(i) for i in clustered.graph.initializer}
    assert len(np.unique(cw["w2"])) <= 16
    assert len(np.unique(cw["b2"])) > 16  # biases are left alone


def test_kmeans_error_shrinks_with_more_clusters() -> None:
    w = np.random.default_rng(0).normal(size=(64, 32, 3, 3)).astype(np.float32)
    errors = [float(np.mean((ov.cluster_kmeans(w, k) - w) ** 2)) for k in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2]
    assert len(np.unique(ov.cluster_kmeans(w, 4))) == 4


def test_mixed_keeps_sensitive_layers_in_float(source: SourceModel, tmp_path: Path) -> None:
    meta = ov.build_int8_mixed(
        source,
        tmp_path / "mixed",
        budget_pp=0.0,
        max_excluded=2,
        eval_limit=32,
        calibration_limit=16,
    )
    assert meta.precision == "mixed"
    float_nodes = meta.extra["float_nodes"]
    assert 1 <= len(float_nodes) <= 2
    assert set(meta.extra["probe_errors"]) == {"conv1", "conv2", "conv3", "fc"}
    model = onnx.load(str(tmp_path / "mixed" / "model.onnx"))
    kept = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert set(float_nodes) <= kept
    assert not (tmp_path / "mixed" / "probes").exists()
    assert OrtRunner(tmp_path / "mixed" / "model.onnx").run(source.validation_inputs()).shape == (
        64,
        10,
    )


def test_unloadable_model_is_reported_as_unavailable(tmp_path: Path) -> None:
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    onnx.save(model, str(tmp_path / "odd.onnx"))
    with pytest.raises(VariantUnavailable, match="onnxruntime cannot load it"):
        ov.check_loads(tmp_path / "odd.onnx")
