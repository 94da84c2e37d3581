"""`model build --variants onnx-int8-qat --train-data FRAMES` on a served controller: the
frames are uploaded, the QAT variant fine-tunes on them (not on the validation set) and
`model variants --format json` shows it measured, with its training record; bad training
frames are a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_models import DIGITS, _cli, served  # noqa: F401 (the fixture)

pytest.importorskip("torch")


@pytest.mark.timeout(240)
def test_build_qat_with_training_frames_through_the_cli(served: Path, tmp_path: Path) -> None:  # noqa: F811
    ref = _cli(
        served, "model", "add", "digits",
        "--onnx", str(DIGITS / "edge.onnx"),
        "--validation", str(DIGITS / "validation.npz"),
        "--calibration", str(DIGITS / "calibration.npz"),
        "--preprocess", str(DIGITS / "preprocess.json"),
    ).stdout  # fmt: skip
    assert ref.strip() == "digits:1"
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 32, 32), np.uint8), y=np.full(4, 42))  # labels past 0..9
    refused = _cli(served, "model", "build", "digits:1", "--no-tflite", "--variants",
                   "onnx-int8-qat", "--train-data", str(bad), check=False)  # fmt: skip
    assert refused.returncode != 0 and len(refused.stderr.splitlines()) == 1
    assert "labels must be 0..9" in refused.stderr

    # The calibration split has labels and is disjoint from validation: the training frames.
    _cli(served, "model", "build", "digits:1", "--profiles", "x86-64-vnni",
         "--no-tflite", "--variants", "onnx-int8-qat", "--runs", "3",
         "--train-data", str(DIGITS / "calibration.npz"))  # fmt: skip
    data = json.loads(_cli(served, "model", "variants", "digits:1", "--format", "json").stdout)
    (qat,) = [v for v in data["variants"] if v["variant"] == "onnx-int8-qat"]
    assert qat["status"] == "built", qat
    assert qat["precision"] == "int8" and 0.9 <= qat["accuracy"] <= 1.0
    training = qat["metrics"]["training"]
    assert training["data"].startswith("training frames") and training["frames"] == 200
    assert training["fit"]["steps"] > 0 and training["wall_seconds"]["fine_tune"] > 0
    assert data["selections"]["x86-64-vnni"]["variant"] == "onnx-int8-qat"
