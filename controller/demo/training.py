"""Story: knowledge distillation. A student of the catalogue's baseline architecture (the
fashion edge model's) learns from the EfficientNet-Lite0 teacher's soft targets plus the
labels, and is registered as a new edge model version.

The short-epoch path: a few thousand training frames for 2 epochs, so the story takes well
under a minute; `bench/bench_distill.py` runs the full recipe (60,000 frames) and compares it
with the same architecture trained without the teacher.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from controller.demo.context import FASHION, DemoFailed, DemoRun

FASHION_TRAIN = Path("/usr/share/datasets/fashion-mnist")
FRAMES = 3000
EPOCHS = "2"
STUDENT = "mobilenet-w1.0"
NAME = "fashion-distilled"


def _training_frames(demo: DemoRun) -> tuple[Path, str]:
    """A few thousand Fashion-MNIST training frames as an .npz (the calibration split when
    Debian's dataset-fashion-mnist is not installed)."""
    from controller.training.data import load_frames
    from controller.training.errors import TrainingDataError

    try:
        frames = load_frames(FASHION_TRAIN)
    except TrainingDataError:
        return FASHION.calibration, f"{FASHION.calibration.name} (no {FASHION_TRAIN})"
    pick = np.random.default_rng(0).permutation(len(frames))[:FRAMES]
    path = demo.root / "fashion-train.npz"
    np.savez(path, x=frames.x[pick], y=frames.y[pick])
    return path, f"{FRAMES} frames of {FASHION_TRAIN}"


def story(demo: DemoRun) -> None:
    FASHION.require(FASHION.cloud_onnx, FASHION.validation)
    try:
        import torch  # noqa: F401  (the train extra)
    except ImportError:
        demo.step("distillation: skipped, this controller has no train extra (torch)")
        return
    data, described = _training_frames(demo)
    teacher = FASHION.cloud_model
    demo.step(
        f"distil a {STUDENT} student from {teacher} on {described}, {EPOCHS} epochs "
        "(the short-epoch path; bench/bench_distill.py runs the full recipe)"
    )
    args = [
        "model", "distill", teacher, "--student", STUDENT, "--data", str(data),
        "--name", NAME, "--epochs", EPOCHS, "--max-minutes", "5",
    ]  # fmt: skip
    demo.say(f"$ edgefleet {' '.join(args)}")
    cmd = [sys.executable, "-m", "controller.cli", "--data-dir", str(demo.controller_dir), *args]
    # the progress bars go to stderr, shown as they are; the summary comes on stdout
    result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise DemoFailed(f"`edgefleet {' '.join(args)}` failed (exit {result.returncode})")
    demo.say(result.stdout.rstrip())
    models = demo.edgefleet_json("model", "list")
    distilled = [m for m in models if m["name"] == NAME]
    if not distilled:
        raise DemoFailed(f"model list has no {NAME} after the distillation")
    demo.step(f"{NAME}:{distilled[-1]['version']} is registered: build and roll it out like any")
    demo.say(demo.edgefleet("model", "list").rstrip())
