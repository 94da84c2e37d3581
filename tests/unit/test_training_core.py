"""The training core (controller/training): frames in, ONNX into torch and back, the loop."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from controller.optimize.source import load_preprocessing
from controller.training.data import Frames, load_frames
from controller.training.errors import (
    TrainingCancelled,
    TrainingDataError,
    TrainingTimedOut,
)
from controller.training.loop import FitConfig, fit, predict_logits
from controller.training.teacher import teacher_logits
from controller.training.torch_model import export_onnx, onnx_to_torch

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_frames_load_from_npz_and_from_an_idx_directory(tmp_path: Path) -> None:
    npz = load_frames(DIGITS / "validation.npz")
    _idx(tmp_path / "train-images-idx3-ubyte.gz", npz.x)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", npz.y)
    idx = load_frames(tmp_path)
    assert np.array_equal(idx.x, npz.x) and np.array_equal(idx.y, npz.y)


def test_bad_training_data_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no such file"):
        load_frames(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TrainingDataError, match="not a readable"):
        load_frames(tmp_path / "junk.npz")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(TrainingDataError, match="arrays x"):
        load_frames(tmp_path / "nolabels.npz")
    with pytest.raises(TrainingDataError, match="over the bound"):
        load_frames(DIGITS / "validation.npz", limit=10)
    with pytest.raises(TrainingDataError, match=r"labels must be 0\.\.9"):
        Frames(np.zeros((2, 8, 8), np.uint8), np.array([0, 12])).check_classes(10)
    with pytest.raises(TrainingDataError, match="IDX"):
        load_frames(tmp_path)  # a directory without IDX files


def test_an_onnx_model_trains_in_torch_and_exports_back_matching(tmp_path: Path) -> None:
    frames = load_frames(DIGITS / "validation.npz")
    pre = load_preprocessing(DIGITS / "preprocess.json")
    x = frames.inputs(pre)
    module = onnx_to_torch(DIGITS / "edge.onnx")
    session = ort.InferenceSession(str(DIGITS / "edge.onnx"), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(predict_logits(module, x) - reference).max() < 1e-4

    soft = teacher_logits(DIGITS / "cloud.onnx", pre, frames.x, cache_dir=tmp_path / "cache")
    assert list(tmp_path.joinpath("cache").glob("teacher-*.npy"))  # a second run reads it
    assert np.array_equal(teacher_logits(DIGITS / "cloud.onnx", pre, frames.x,
                                         cache_dir=tmp_path / "cache"), soft)  # fmt: skip
    steps: list[int] = []
    report = fit(
        module, x, frames.y, FitConfig(epochs=2, learning_rate=1e-3, batch_size=64),
        teacher_logits=soft, progress=lambda e, s, n, loss: steps.append(s),
    )  # fmt: skip
    assert report.steps == len(steps) == 2 * (len(x) // 64) and np.isfinite(report.final_loss)
    out = export_onnx(module, x.shape[1:], tmp_path / "model.onnx")
    trained = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = trained.run(None, {"input": x})[0]
    assert np.abs(got - predict_logits(module, x)).max() < 1e-3
    assert (got.argmax(1) == frames.y).mean() > 0.9


def test_training_stops_when_cancelled_or_past_its_time_bound() -> None:
    frames = load_frames(DIGITS / "validation.npz")
    x = frames.inputs(load_preprocessing(DIGITS / "preprocess.json"))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled):
        fit(onnx_to_torch(DIGITS / "edge.onnx"), x, frames.y, FitConfig(), cancel=cancel)
    with pytest.raises(TrainingTimedOut, match="bound of 0 s"):
        fit(onnx_to_torch(DIGITS / "edge.onnx"), x, frames.y, FitConfig(max_seconds=1e-9))
    with pytest.raises(TrainingDataError, match="alpha"):
        FitConfig(alpha=2.0)
