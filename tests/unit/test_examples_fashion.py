"""The committed Fashion-MNIST workload (examples/fashion) is present, sound and as good as its
README says, measured through the product's own preprocessing (edgefleet.frames)."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agent.runtime.preprocess import Preprocessor
from controller.optimize.source import preprocess as build_preprocess
from controller.serving.cloud_model import preprocess as cloud_preprocess
from edgefleet.frames import frames_tensor
from edgefleet.modelmeta import Preprocessing
from tests.conftest import REPO

FASHION = REPO / "examples" / "fashion"
SPLITS = {"calibration": 500, "validation": 2000, "test": 2000, "test_corrupted": 2000}
INPUTS = {"edge": [1, 28, 28], "cloud": [3, 64, 64]}
MAX_FILE_BYTES = 16_000_000


@functools.cache
def split(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(FASHION / f"{name}.npz") as data:
        return data["x"], data["y"]


def preprocessing(model: str) -> Preprocessing:
    return Preprocessing.from_file(FASHION / f"{model}_preprocess.json")


@functools.cache
def session(model: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(FASHION / f"{model}.onnx"), providers=["CPUExecutionProvider"])


@functools.cache
def logits(model: str, name: str) -> np.ndarray:
    x, _ = split(name)
    pre = preprocessing(model)
    batches = [
        session(model).run(["logits"], {"input": frames_tensor(x[s : s + 250], pre)})[0]
        for s in range(0, len(x), 250)
    ]
    return np.concatenate(batches)


def accuracy(model: str, name: str) -> float:
    return float((logits(model, name).argmax(axis=1) == split(name)[1]).mean())


def test_data_files_have_the_documented_shapes_and_disjoint_splits() -> None:
    seen: set[bytes] = set()
    for name, count in SPLITS.items():
        x, y = split(name)
        assert x.dtype == np.uint8 and x.shape == (count, 28, 28)
        assert y.dtype == np.int64 and y.shape == (count,)
        assert set(np.unique(y).tolist()) == set(range(10))
        if name == "test_corrupted":
            assert np.array_equal(y, split("test")[1])  # the same frames, degraded
            assert not np.array_equal(x, split("test")[0])
            continue
        frames = {frame.tobytes() for frame in x}
        assert len(frames & seen) <= 2, f"{name} shares frames with another split"
        seen |= frames
    labels = (FASHION / "labels.txt").read_text().splitlines()
    assert len(labels) == 10 and labels[0] == "t-shirt/top" and labels[9] == "ankle boot"
    for path in FASHION.iterdir():
        if path.suffix in {".onnx", ".npz"}:
            assert path.stat().st_size < MAX_FILE_BYTES, path.name


@pytest.mark.parametrize("model", ["edge", "cloud"])
def test_models_are_plain_onnx_with_the_agreed_interface(model: str) -> None:
    proto = onnx.load(str(FASHION / f"{model}.onnx"))
    onnx.checker.check_model(proto)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == INPUTS[model] and isinstance(dims[0], str)
    pre = preprocessing(model)
    assert [pre.channels, *pre.size] == INPUTS[model]


def test_the_agent_the_build_and_the_cloud_server_preprocess_alike() -> None:
    """One arithmetic on every side: the accuracy the build measures is the device's."""
    x, _ = split("test_corrupted")
    for model in ("edge", "cloud"):
        pre = preprocessing(model)
        agent = Preprocessor(pre)
        batch = build_preprocess(x[:16], pre)
        for i in range(16):
            assert np.array_equal(agent(x[i]), batch[i : i + 1])
            assert np.array_equal(cloud_preprocess(x[i], pre), batch[i : i + 1])


def test_teacher_reaches_its_accuracy_target_on_the_test_split() -> None:
    assert accuracy("cloud", "test") >= 0.92
    assert accuracy("cloud", "validation") >= 0.92


def test_student_is_a_plain_baseline_below_the_teacher() -> None:
    assert 0.85 <= accuracy("edge", "test") < accuracy("cloud", "test")
    assert accuracy("edge", "test_corrupted") < accuracy("cloud", "test_corrupted")


def test_offloading_a_quarter_of_the_corrupted_frames_reaches_the_cloud() -> None:
    edge, cloud = logits("edge", "test_corrupted"), logits("cloud", "test_corrupted")
    y = split("test_corrupted")[1]
    z = np.exp(edge - edge.max(axis=1, keepdims=True))
    confidence = (z / z.sum(axis=1, keepdims=True)).max(axis=1)
    answer = edge.argmax(axis=1)
    hardest = np.argsort(confidence, kind="stable")[: len(y) // 4]
    answer[hardest] = cloud.argmax(axis=1)[hardest]
    assert float((answer == y).mean()) >= 0.99 * float((cloud.argmax(axis=1) == y).mean())


def test_the_cloud_server_reads_label_names_with_spaces() -> None:
    from controller.services.offload import load_cloud_model

    model = load_cloud_model(
        FASHION / "cloud.onnx", "fashion-cloud:1", None, None,
        preprocess_file=FASHION / "cloud_preprocess.json",
    )  # fmt: skip
    assert list(model.labels) == (FASHION / "labels.txt").read_text().splitlines()
    assert len(model.labels) == 10 and "ankle boot" in model.labels
