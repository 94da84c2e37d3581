"""The committed reference models and data in examples/ are present, sound and good enough."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefleet.modelmeta import Preprocessing
from tests.conftest import REPO

DIGITS = REPO / "examples" / "digits"
SPLITS = {"calibration": 200, "validation": 300, "test_corrupted": 300}
MAX_FILE_BYTES = 1_100_000


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(DIGITS / f"{name}.npz") as data:
        return data["x"], data["y"]


def preprocessing() -> Preprocessing:
    fields = json.loads((DIGITS / "preprocess.json").read_text())
    return Preprocessing(**{**fields, "size": tuple(fields["size"])})


def to_input(frames: np.ndarray) -> np.ndarray:
    pre = preprocessing()
    x = frames.astype(np.float32)[:, None, :, :] * np.float32(pre.scale)
    return ((x - np.float32(pre.mean[0])) / np.float32(pre.std[0])).astype(np.float32)


def session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(DIGITS / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def predict(model: str, frames: np.ndarray) -> np.ndarray:
    logits = session(model).run(["logits"], {"input": to_input(frames)})[0]
    return np.asarray(logits).argmax(axis=1)


def test_digits_data_files_have_the_documented_shapes() -> None:
    seen: set[bytes] = set()
    for name, approx_count in SPLITS.items():
        x, y = load_split(name)
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[1:] == (32, 32)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert abs(len(x) - approx_count) <= 20
        assert set(np.unique(y).tolist()) == set(range(10))
        frames = {frame.tobytes() for frame in x}
        assert not frames & seen, f"{name} shares frames with another split"
        seen |= frames
    assert (DIGITS / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    pre = preprocessing()
    assert pre.size == (32, 32) and pre.channels == 1 and pre.layout == "NCHW"
    for path in DIGITS.iterdir():
        if path.suffix in {".onnx", ".npz"}:
            assert path.stat().st_size < MAX_FILE_BYTES, path.name


@pytest.mark.parametrize("model", ["edge", "cloud"])
def test_digits_models_are_plain_onnx_with_the_agreed_interface(model: str) -> None:
    proto = onnx.load(str(DIGITS / f"{model}.onnx"))
    onnx.checker.check_model(proto)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert {node.domain for node in proto.graph.node} <= {""}
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [1, 32, 32] and isinstance(dims[0], str)
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("batch", [1, 8])
def test_edge_model_runs_with_any_batch(batch: int) -> None:
    x, _ = load_split("validation")
    logits = session("edge").run(["logits"], {"input": to_input(x[:batch])})[0]
    assert logits.shape == (batch, 10) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_edge_model_is_accurate_on_clean_validation() -> None:
    x, y = load_split("validation")
    assert float((predict("edge", x) == y).mean()) >= 0.95


def test_cloud_model_beats_edge_model_on_corrupted_frames() -> None:
    x, y = load_split("test_corrupted")
    edge = float((predict("edge", x) == y).mean())
    cloud = float((predict("cloud", x) == y).mean())
    assert cloud >= 0.95
    assert cloud > edge


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
