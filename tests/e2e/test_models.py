"""'Done when' of the model pipeline, as a user types it: `model add` + `model build --profiles
all` on a served controller, then `model variants --format json` shows measured figures and a
selection with reasons for every profile; bad input is a one-line error."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.optimize.synthetic import make_tiny_cnn, self_labels, synthetic_frames
from edgefleet.modelmeta import Preprocessing
from edgefleet.profiles import BUILTIN_PROFILES
from tests.conftest import free_port
from tests.fleet import edgefleet_cli

BIN = Path(sys.executable).parent
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "controller"
    proc = subprocess.Popen(
        [
            str(BIN / "edgefleet"),
            "controller",
            "serve",
            "--data-dir",
            str(data_dir),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(free_port()),
            "--device-port",
            str(free_port()),
            "--http-port",
            "0",
            "--mqtt-port",
            str(free_port()),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (data_dir / "client.toml").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "controller did not start"
            time.sleep(0.2)
        yield data_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _model_files(tmp_path: Path) -> tuple[Path, Path]:
    """The committed digits edge model when present, else a tiny synthetic stand-in."""
    if (DIGITS / "edge.onnx").exists() and (DIGITS / "validation.npz").exists():
        return DIGITS / "edge.onnx", DIGITS / "validation.npz"
    pre = Preprocessing(size=(32, 32), channels=1)
    onnx = make_tiny_cnn(tmp_path / "tiny.onnx", width=8)
    x = synthetic_frames(32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=self_labels(onnx, x, pre))
    (tmp_path / "val.npz").write_bytes(buf.getvalue())
    return onnx, tmp_path / "val.npz"


@pytest.mark.timeout(240)
def test_add_build_all_profiles_and_variants_json(served: Path, tmp_path: Path) -> None:
    onnx, val = _model_files(tmp_path)
    bad = _cli(
        served, "model", "add", "m", "--onnx", str(val), "--validation", str(val), check=False
    )
    assert (
        bad.returncode != 0
        and bad.stderr.startswith("error:")
        and len(bad.stderr.splitlines()) == 1
    )

    ref = _cli(served, "model", "add", "m", "--onnx", str(onnx), "--validation", str(val)).stdout
    assert ref.strip() == "m:1"
    unknown = _cli(served, "model", "build", "m:1", "--profiles", "nope", check=False)
    assert unknown.returncode != 0 and "unknown profile" in unknown.stderr
    _cli(
        served,
        "model",
        "build",
        "m:1",
        "--profiles",
        "all",
        "--no-tflite",
        "--variants",
        "onnx-fp32,onnx-int8-static,onnx-fp16",
        "--runs",
        "3",
    )
    data = json.loads(_cli(served, "model", "variants", "m:1", "--format", "json").stdout)
    built = [v for v in data["variants"] if v["status"] == "built"]
    assert len(built) == 3
    for v in built:
        assert v["size_bytes"] > 0 and v["zstd_bytes"] > 0
        assert 0 < v["latency_median_ms"] <= v["latency_p95_ms"]
        assert 0 <= v["accuracy"] <= 1 and 0 <= v["agreement"] <= 1 and v["ece"] >= 0
    assert set(data["selections"]) == {p.name for p in BUILTIN_PROFILES}
    for sel in data["selections"].values():
        losers = {v["variant"] for v in built} - {sel["variant"]}
        assert set(sel["rejected"]) == losers and all(sel["rejected"].values())
    table = _cli(served, "model", "variants", "m:1").stdout
    assert "onnx-int8-static" in table and "x86-64-vnni" in table
    listed = json.loads(_cli(served, "model", "list", "--format", "json").stdout)
    assert listed[0]["build_status"] == "succeeded" and listed[0]["variants_built"] == 3


def _cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return edgefleet_cli(data_dir, *args, check=check, timeout_s=110)
