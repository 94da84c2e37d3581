"""A tiny, deterministic image classifier and data for tests, demos and fakes.

The labels are the model's own top-1 answers, so the source scores 100% and any accuracy a
variant loses is loss from optimization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgefleet.modelmeta import Preprocessing


def make_tiny_cnn(
    path: Path,
    *,
    size: int = 32,
    channels: int = 1,
    width: int = 16,
    classes: int = 10,
    seed: int = 0,
) -> Path:
    """Conv-Relu-Conv-Relu-GlobalAveragePool-Gemm, input ``input`` [N, C, size, size]."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:]))
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        return numpy_helper.from_array(w, name)

    inits = [
        weight("w1", width, channels, 3, 3),
        numpy_helper.from_array(rng.normal(0, 0.1, width).astype(np.float32), "b1"),
        weight("w2", 2 * width, width, 3, 3),
        numpy_helper.from_array(rng.normal(0, 0.1, 2 * width).astype(np.float32), "b2"),
        weight("w3", 2 * width, 2 * width, 3, 3),
        numpy_helper.from_array(np.zeros(2 * width, np.float32), "b3"),
        weight("wf", classes, 2 * width),
        numpy_helper.from_array(np.zeros(classes, np.float32), "bf"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def synthetic_frames(n: int, *, size: int = 32, channels: int = 1, seed: int = 1) -> np.ndarray:
    """Smooth random uint8 frames (N x H x W, or N x H x W x C for colour)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, size // 4, size // 4, channels)).astype(np.float32)
    frames = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    frames += rng.normal(0, 12, size=frames.shape)
    out = np.clip(frames, 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def self_labels(model_path: Path, frames: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """The model's own top-1 answers for ``frames``."""
    import onnxruntime as ort

    from controller.optimize.source import preprocess

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.run(None, {name: preprocess(frames, pre)})[0]
    return np.asarray(logits.argmax(axis=1), dtype=np.int64)
