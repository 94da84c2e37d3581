"""Tiny ONNX classifiers and variant directories for the runtime, agent and offload tests.

Built with onnx.helper (a dev dependency; agent code never imports onnx).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgefleet.modelmeta import Preprocessing, VariantMetadata

SIDE = 8
CLASSES = 10
PREPROCESSING = Preprocessing(size=(SIDE, SIDE), channels=1, mean=(0.5,), std=(0.5,))


def linear_classifier(path: Path, weights: np.ndarray, bias: np.ndarray) -> Path:
    """logits = flatten(input [N,1,SIDE,SIDE]) @ weights + bias."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def random_weights(seed: int = 0, scale: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (SIDE * SIDE, CLASSES)), np.zeros(CLASSES)


def constant_weights(label: int) -> tuple[np.ndarray, np.ndarray]:
    """A model that always answers `label`, confidently."""
    bias = np.zeros(CLASSES)
    bias[label] = 20.0
    return np.zeros((SIDE * SIDE, CLASSES)), bias


def write_variant(directory: Path, weights: tuple[np.ndarray, np.ndarray], **meta: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    linear_classifier(directory / "model.onnx", *weights)
    fields: dict[str, Any] = {
        "model": "tiny",
        "version": 1,
        "variant": "onnx-fp32",
        "variant_id": "tiny:1:onnx-fp32",
        "runtime": "onnxruntime",
        "precision": "fp32",
        "file": "model.onnx",
        "input_name": "input",
        "input_shape": (-1, 1, SIDE, SIDE),
        "input_dtype": "float32",
        "output_name": "logits",
        "preprocessing": PREPROCESSING,
        "labels": tuple(f"class{i}" for i in range(CLASSES)),
    }
    fields.update(meta)
    (directory / "variant.json").write_text(VariantMetadata(**fields).to_json())
    return directory


def frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)


def test_tiny_model_computes_the_linear_map(tmp_path: Path) -> None:
    import onnxruntime as ort

    weights, bias = random_weights(3)
    path = linear_classifier(tmp_path / "m.onnx", weights, bias)
    x = np.random.default_rng(0).normal(size=(2, 1, SIDE, SIDE)).astype(np.float32)
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    np.testing.assert_allclose(out, x.reshape(2, -1) @ weights + bias, rtol=1e-4, atol=1e-4)
