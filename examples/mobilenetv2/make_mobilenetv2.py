"""Build a MobileNetV2-architecture ONNX model with seeded random weights, and sample data.

The graph is the standard MobileNetV2 (1.0x, 224x224): a 3x3 stem, 17 inverted residual
blocks (expansion 6, except 1 in the first), a 1x1 head to 1280 channels, global average
pooling and a 1000-way classifier. BatchNorm is already folded into each Conv (weights plus
bias) and into the classifier, ReLU6 is Clip(0, 6). Weights are He-initialised from a fixed
seed, so the model is a realistic workload for build and benchmark tools but classifies
nothing in particular.
Needs only numpy, onnx and onnxruntime (no torch), so a fresh machine can build it:

    python examples/mobilenetv2/make_mobilenetv2.py [--out PATH] [--data PATH --count N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 0
OPSET = 17
SIZE = 224
NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# (expansion, output channels, repeats, first stride) per stage.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_FRAMES = 32  # frames whose pooled features set the classifier's BatchNorm
DEFAULT_OUT = Path(__file__).resolve().parent / "mobilenetv2.onnx"


class GraphBuilder:
    """Accumulates nodes and initializers; every tensor gets a fresh, readable name."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0
        self.add_constant("relu6_min", np.array(0.0, np.float32))
        self.add_constant("relu6_max", np.array(6.0, np.float32))

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def add_constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def conv(
        self, x: str, c_in: int, c_out: int, k: int, stride: int, groups: int, relu6: bool
    ) -> str:
        """Conv with folded BatchNorm: He-normal weights, small random bias; then ReLU6."""
        fan_in = (c_in // groups) * k * k
        gain = 2.0 if relu6 else 1.0  # linear bottlenecks keep unit variance
        weight = self.rng.normal(0.0, np.sqrt(gain / fan_in), (c_out, c_in // groups, k, k))
        bias = self.rng.normal(0.0, 0.05, c_out)
        name = self.fresh("conv")
        w = self.add_constant(f"{name}.weight", weight.astype(np.float32))
        b = self.add_constant(f"{name}.bias", bias.astype(np.float32))
        out = f"{name}.out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [out],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )
        )
        if not relu6:
            return out
        clipped = f"{name}.relu6"
        self.nodes.append(
            helper.make_node(
                "Clip", [out, "relu6_min", "relu6_max"], [clipped], name=f"{name}_relu6"
            )
        )
        return clipped

    def inverted_residual(self, x: str, c_in: int, c_out: int, stride: int, t: int) -> str:
        hidden = c_in * t
        y = x
        if t != 1:
            y = self.conv(y, c_in, hidden, 1, 1, 1, relu6=True)
        y = self.conv(y, hidden, hidden, 3, stride, hidden, relu6=True)
        y = self.conv(y, hidden, c_out, 1, 1, 1, relu6=False)
        if stride == 1 and c_in == c_out:
            name = self.fresh("add")
            self.nodes.append(helper.make_node("Add", [x, y], [f"{name}.out"], name=name))
            return f"{name}.out"
        return y


def build_model(seed: int = SEED) -> onnx.ModelProto:
    """MobileNetV2: input ``input`` [N,3,224,224] float32 -> ``logits`` [N,1000]."""
    g = GraphBuilder(np.random.default_rng(seed))
    x = g.conv("input", 3, STEM_CHANNELS, 3, 2, 1, relu6=True)
    c_in = STEM_CHANNELS
    for t, c_out, repeats, first_stride in STAGES:
        for i in range(repeats):
            x = g.inverted_residual(x, c_in, c_out, first_stride if i == 0 else 1, t)
            c_in = c_out
    x = g.conv(x, c_in, HEAD_CHANNELS, 1, 1, 1, relu6=True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
    fc_w = g.rng.normal(0.0, np.sqrt(1.0 / HEAD_CHANNELS), (NUM_CLASSES, HEAD_CHANNELS))
    mean, std = feature_statistics(g, seed)
    # A BatchNorm on the pooled features, folded into the classifier: without it the random
    # network's features barely vary between images and nearly every frame gets one class.
    weight = (fc_w / std).astype(np.float32)
    g.add_constant("classifier.weight", weight)
    g.add_constant("classifier.bias", (-weight @ mean).astype(np.float32))
    g.nodes.append(
        helper.make_node(
            "Gemm",
            ["features", "classifier.weight", "classifier.bias"],
            ["logits"],
            name="classifier",
            transB=1,
        )
    )
    graph = helper.make_graph(
        g.nodes,
        "mobilenetv2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgefleet-examples",
    )
    model.ir_version = 8  # opset 17's IR version, readable by older runtimes too
    onnx.checker.check_model(model)
    return model


def feature_statistics(g: GraphBuilder, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the pooled features over sample frames, run with onnxruntime."""
    import onnxruntime as ort

    graph = helper.make_graph(
        g.nodes,
        "mobilenetv2-features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", HEAD_CHANNELS])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    frames = preprocess(sample_frames(FEATURE_FRAMES, seed + 1))
    features = np.asarray(session.run(["features"], {"input": frames})[0])
    return features.mean(axis=0), features.std(axis=0) + 1e-3


def parameter_count(model: onnx.ModelProto) -> int:
    """Weights and biases (the two Clip bounds are not parameters)."""
    return sum(
        int(np.prod(init.dims))
        for init in model.graph.initializer
        if not init.name.startswith("relu6_")
    )


def preprocess(frames: np.ndarray) -> np.ndarray:
    """uint8 N x 224 x 224 x 3 frames -> normalized float32 N x 3 x 224 x 224."""
    scaled = frames.astype(np.float32) / np.float32(255.0)
    normalized = (scaled - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2), dtype=np.float32)


def sample_frames(count: int, seed: int = SEED) -> np.ndarray:
    """Random-ish images: smooth colour fields plus a few bright rectangles and pixel noise."""
    rng = np.random.default_rng(seed)
    frames = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        coarse = rng.uniform(0, 255, (8, 8, 3))
        img = np.kron(coarse, np.ones((SIZE // 8, SIZE // 8, 1)))
        for _ in range(rng.integers(1, 5)):
            y0, x0 = rng.integers(0, SIZE - 32, 2)
            h, w = rng.integers(16, 96, 2)
            img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 12, img.shape)
        frames[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames


def make_data(model_path: Path, data_path: Path, count: int, seed: int = SEED) -> np.ndarray:
    """Write frames and the model's own argmax labels to ``data_path`` (keys x, y)."""
    import onnxruntime as ort

    frames = sample_frames(count, seed)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels = np.concatenate(
        [
            np.asarray(session.run(["logits"], {"input": preprocess(frames[i : i + 16])})[0])
            .argmax(axis=1)
            .astype(np.int64)
            for i in range(0, count, 16)
        ]
    )
    data_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(data_path, x=frames, y=labels)
    return labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write")
    parser.add_argument("--data", type=Path, help="also write sample frames + labels (.npz)")
    parser.add_argument("--count", type=int, default=64, help="frames in --data")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    model = build_model(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out))
    print(f"wrote {args.out}: {parameter_count(model):,} parameters, "
          f"{args.out.stat().st_size:,} bytes")  # fmt: skip
    if args.data is not None:
        labels = make_data(args.out, args.data, args.count, args.seed)
        print(f"wrote {args.data}: {len(labels)} frames, {len(set(labels.tolist()))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
