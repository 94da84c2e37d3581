"""The Fashion-MNIST reference workload (examples/fashion) as the benchmarks use it.

    edge.onnx  + edge_preprocess.json   the edge student, input [N, 1, 28, 28]
    cloud.onnx + cloud_preprocess.json  the cloud teacher (EfficientNet-Lite0, 3 x 64 x 64 input)
    validation.npz (2000), calibration.npz (500), test.npz (2000), test_corrupted.npz (2000)

Build sources are made the way the controller makes them (``SourceModel.from_files``: the
validation set is what every variant's accuracy is measured on, all of it, calibration from
calibration.npz). The cloud model can be replaced (``--cloud-model``/``--cloud-preprocess``),
e.g. by edge.onnx while the teacher is still training.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from controller.optimize.source import SourceModel
    from edgefleet.hardware import HardwareFacts
    from edgefleet.profiles import HardwareProfile

ROOT = Path(__file__).resolve().parent.parent
FASHION = ROOT / "examples" / "fashion"
TFLITE_VENV_PYTHON = ROOT / ".venv-tflite" / "bin" / "python"
EDGE_NAME = "fashion-edge"
CLOUD_NAME = "fashion-cloud"


@dataclass(frozen=True)
class Workload:
    folder: Path
    cloud_model: Path
    cloud_preprocess: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Workload:
        folder: Path = args.fashion
        return cls(
            folder,
            args.cloud_model or folder / "cloud.onnx",
            args.cloud_preprocess or folder / "cloud_preprocess.json",
        )

    @property
    def edge_model(self) -> Path:
        return self.folder / "edge.onnx"

    @property
    def edge_preprocess(self) -> Path:
        return self.folder / "edge_preprocess.json"

    @property
    def labels_file(self) -> Path:
        return self.folder / "labels.txt"

    @property
    def stand_in(self) -> bool:
        """True when the cloud role is played by something other than cloud.onnx."""
        return self.cloud_model.resolve() != (self.folder / "cloud.onnx").resolve()

    def missing(self, *, cloud: bool = True) -> list[Path]:
        names = ["edge.onnx", "edge_preprocess.json", "labels.txt"]
        names += [f"{s}.npz" for s in ("validation", "calibration", "test", "test_corrupted")]
        paths = [self.folder / n for n in names]
        if cloud:
            paths += [self.cloud_model, self.cloud_preprocess]
        return [p for p in paths if not p.is_file()]

    def labels(self) -> tuple[str, ...]:
        lines = self.labels_file.read_text(encoding="utf-8").splitlines()
        return tuple(line.strip() for line in lines if line.strip())

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``x`` uint8 [N, 28, 28] and ``y`` int64 [N] of one .npz split."""
        with np.load(self.folder / f"{name}.npz") as data:
            return data["x"], data["y"]

    def source(self, role: str, version: int = 1) -> SourceModel:
        from controller.optimize.source import SourceModel, load_preprocessing

        model, pre, name = (
            (self.edge_model, self.edge_preprocess, EDGE_NAME)
            if role == "edge"
            else (self.cloud_model, self.cloud_preprocess, CLOUD_NAME)
        )
        return SourceModel.from_files(
            model,
            name,
            version,
            load_preprocessing(pre),
            self.folder / "validation.npz",
            self.folder / "calibration.npz",
            self.labels(),
        )


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fashion", type=Path, default=FASHION, help="workload folder")
    parser.add_argument(
        "--cloud-model", type=Path, default=None, help="cloud model (default: FOLDER/cloud.onnx)"
    )
    parser.add_argument(
        "--cloud-preprocess",
        type=Path,
        default=None,
        help="its preprocess.json (default: FOLDER/cloud_preprocess.json)",
    )


def host_profile() -> tuple[HardwareProfile, HardwareFacts]:
    """This machine's profile, resolved the way the controller resolves ``--profile auto``
    (``ProfileCatalogue.resolve`` on the facts the agent detects)."""
    from agent.hardware import detect
    from edgefleet.profiles import ProfileCatalogue

    facts = detect()
    return ProfileCatalogue.load().resolve(facts), facts


def litert_toolchain(flag: str | None) -> tuple[str | None, str]:
    """The onnx2tf interpreter as the controller's entry point finds it (flag, environment,
    then .venv-tflite discovery), and the line describing the choice."""
    import controller.config as config

    if hasattr(config, "load_config") and hasattr(config, "ToolchainSearch"):
        flags = {"onnx2tf_python": flag} if flag else {}
        search = config.ToolchainSearch.of_this_process()
        loaded = config.load_config(flags, os.environ, None, toolchain=search)
        return loaded.config.onnx2tf_python or None, loaded.onnx2tf.describe()
    # a controller without toolchain discovery: the flag, else the repository's TF venv
    python = flag or (str(TFLITE_VENV_PYTHON) if TFLITE_VENV_PYTHON.is_file() else None)
    return python, f"LiteRT toolchain: {python or 'none'} (bench default)"


def interleaved_times(
    calls: Mapping[str, Callable[[int], object]], seconds: float, block: int = 16
) -> dict[str, list[float]]:
    """The ms of every call of each, timed in alternating blocks of ``block`` calls for
    ``seconds`` (drift and noise then hit every side alike). Each call gets a running index."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        for name, call in calls.items():
            for _ in range(block):
                t = time.perf_counter()
                call(i)
                times[name].append((time.perf_counter() - t) * 1000)
                i += 1
    return times
