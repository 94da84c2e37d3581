"""Source model inspection, data checks and preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.errors import ControllerError
from controller.optimize.errors import BuildError, DataMismatch, NotAnOnnxModel
from controller.optimize.source import SourceModel, inspect_onnx, load_preprocessing, preprocess
from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from edgefleet.modelmeta import Preprocessing

PRE = Preprocessing(size=(32, 32), channels=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cnn(tmp_path_factory.mktemp("src") / "tiny.onnx", width=8)


@pytest.fixture(scope="module")
def data(model: Path) -> tuple[np.ndarray, np.ndarray]:
    frames = synthetic_frames(20)
    return frames, self_labels(model, frames, PRE)


def test_inspect_reads_signature(model: Path) -> None:
    sig = inspect_onnx(model)
    assert sig.input_name == "input"
    assert sig.input_shape == (-1, 1, 32, 32)
    assert sig.input_dtype == "float32"
    assert sig.layout == "NCHW"
    assert sig.output_name == "logits"
    assert sig.num_classes == 10
    assert sig.dynamic_batch


def test_not_onnx_file_is_a_one_line_build_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.onnx"
    junk.write_text("this is not a protobuf, just text\n" * 10)
    with pytest.raises(NotAnOnnxModel) as info:
        inspect_onnx(junk)
    assert isinstance(info.value, BuildError) and isinstance(info.value, ControllerError)
    assert "\n" not in str(info.value) and "not an ONNX model" in str(info.value)


def test_missing_file_is_not_an_onnx_model(tmp_path: Path) -> None:
    with pytest.raises(NotAnOnnxModel, match="no such file"):
        inspect_onnx(tmp_path / "absent.onnx")


def test_source_accepts_fitting_data(model: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    frames, labels = data
    src = SourceModel.create(model, "tiny", 3, PRE, frames, labels)
    assert src.validation_inputs().shape == (20, 1, 32, 32)
    assert src.calibration_inputs(5).shape == (5, 1, 32, 32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels_cut": 1}, "20 validation frames but 19 labels"),
        ({"label_value": 12}, "model has 10 classes"),
        ({"float_labels": True}, "1-D integer array"),
        ({"pre": Preprocessing(size=(28, 28), channels=1)}, "wants [1, 32, 32]"),
        ({"pre": Preprocessing(size=(32, 32), channels=3)}, "wants [1, 32, 32]"),
        ({"names": ("a", "b")}, "2 label names for a model with 10 classes"),
        ({"empty_calibration": True}, "must not be empty"),
    ],
)
def test_mismatched_data_raises_clear_error(
    model: Path, data: tuple[np.ndarray, np.ndarray], change: dict, message: str
) -> None:
    frames, labels = data
    labels = labels.copy()
    pre = change.get("pre", PRE)
    calibration = frames[:0] if change.get("empty_calibration") else frames
    if "labels_cut" in change:
        labels = labels[: -change["labels_cut"]]
    if "label_value" in change:
        labels[0] = change["label_value"]
    if change.get("float_labels"):
        labels = labels.astype(np.float32)
    with pytest.raises(DataMismatch) as info:
        SourceModel.create(
            model, "tiny", 1, pre, frames, labels, calibration, labels=change.get("names", ())
        )
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_from_files_reports_missing_arrays(model: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "val.npz", x=synthetic_frames(4))
    with pytest.raises(DataMismatch, match="missing arrays"):
        SourceModel.from_files(model, "tiny", 1, PRE, tmp_path / "val.npz")


def test_preprocess_scales_normalizes_and_lays_out() -> None:
    frames = np.full((2, 32, 32), 255, dtype=np.uint8)
    frames[1] = 0
    pre = Preprocessing(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,))
    out = preprocess(frames, pre)
    assert out.shape == (2, 1, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], -1.0, atol=1e-6)


def test_preprocess_resizes_only_when_needed_and_expands_channels() -> None:
    frames = synthetic_frames(3, size=16)
    pre = Preprocessing(size=(32, 32), channels=3, layout="NHWC")
    out = preprocess(frames, pre)
    assert out.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    same = Preprocessing(size=(16, 16), channels=1, scale=1.0)
    np.testing.assert_array_equal(preprocess(frames, same)[:, 0], frames.astype(np.float32))


def test_load_preprocessing_reads_json(tmp_path: Path) -> None:
    (tmp_path / "pre.json").write_text(
        '{"size": [32, 32], "channels": 1, "scale": 0.00392156862745098,'
        ' "mean": [0.5], "std": [0.5], "layout": "NCHW"}'
    )
    pre = load_preprocessing(tmp_path / "pre.json")
    assert pre == Preprocessing(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,))
    (tmp_path / "bad.json").write_text('{"channels": 1}')
    with pytest.raises(DataMismatch, match="not a valid preprocessing file"):
        load_preprocessing(tmp_path / "bad.json")
