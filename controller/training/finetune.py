"""Brief fine-tuning of a build's trained variants (QAT, channel pruning, reduced resolution):
knowledge distillation from the source model, on frames that are never the validation set,
with the epoch count cut to fit a wall-time budget before training starts.

    data = FinetuneData.of(source_frames, training=None)   # calibration frames, self-distilled
    report = finetune(module, student_x, teacher, data, FinetuneConfig(max_seconds=30))
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from controller.training.data import Frames
from controller.training.errors import TrainingDataError, TrainingTimedOut, TrainingUnavailable
from controller.training.loop import FitConfig, FitReport, fit
from controller.training.torch_model import require

if TYPE_CHECKING:
    import torch

TRAINING_FRAMES = "training frames (labels + distillation from the source model)"
SELF_DISTILLATION = "calibration frames (label-free self-distillation from the source model)"


@dataclass(frozen=True)
class FinetuneConfig:
    """How hard each trained variant fine-tunes. The defaults keep a small model's trained
    variants to some tens of seconds each on two cores."""

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the distillation term with labelled frames
    max_seconds: float = 30.0  # per variant; the epochs are cut to fit before training starts
    max_frames: int = 6000  # a seeded draw of the training frames, when there are more
    seed: int = 0
    threads: int = 0  # torch threads; 0 = torch's default

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_frames < 1:
            raise TrainingDataError("fine-tuning needs a positive time bound and frame count")


@dataclass(frozen=True)
class FinetuneData:
    """Raw frames to fine-tune on, whether their labels are real, and what they are."""

    frames: Frames
    labelled: bool
    description: str

    @classmethod
    def of(
        cls, calibration_x: np.ndarray, training: Frames | None, max_frames: int, seed: int = 0
    ) -> FinetuneData:
        """The build's training frames when given, else the calibration frames (labels then
        come from the source model: label-free self-distillation)."""
        if training is not None and len(training):
            frames = training
            if len(frames) > max_frames:
                index = np.random.default_rng(seed).choice(len(frames), max_frames, replace=False)
                frames = frames.subset(np.sort(index))
            return cls(frames, True, TRAINING_FRAMES)
        x = np.asarray(calibration_x)
        if x.dtype != np.uint8:  # float frames of an unknown range: no guessing
            raise TrainingUnavailable(
                f"the calibration frames are {x.dtype}, fine-tuning takes uint8 frames: "
                "give the build training frames (--train-data)"
            )
        return cls(Frames(x, np.zeros(len(x), np.int64)), False, SELF_DISTILLATION)

    def describe(self) -> dict[str, object]:
        return {"data": self.description, "frames": len(self.frames)}


def _step_seconds(module: torch.nn.Module, x: np.ndarray, batch: int) -> float:
    """Wall time of one forward and backward pass of a batch: the median of four after a
    warm-up pass (the gradients are dropped). On a busy shared host it is an estimate only;
    the time bound still stops the fit."""
    torch = require("torch")
    xb = torch.from_numpy(np.ascontiguousarray(x[:batch]))
    module.train()
    times = []
    for _ in range(5):
        began = time.monotonic()
        module(xb).sum().backward()
        times.append(time.monotonic() - began)
    module.zero_grad(set_to_none=True)
    return float(np.median(times[1:]))


def finetune(
    module: torch.nn.Module,
    x: np.ndarray,
    teacher: np.ndarray,
    data: FinetuneData,
    config: FinetuneConfig,
    *,
    cancel: threading.Event | None = None,
) -> tuple[FitReport | None, dict[str, object]]:
    """Distil ``teacher`` (the source's logits on ``data``) into ``module`` fed ``x`` (the same
    frames, preprocessed for the student). Returns the fit report (None when the time bound
    stopped it: the weights are kept as trained so far) and what was done."""
    if len(x) != len(teacher) or len(x) != len(data.frames):
        raise TrainingDataError(f"{len(x)} inputs, {len(teacher)} teacher answers")
    if config.threads:
        require("torch").set_num_threads(config.threads)
    batch = min(config.batch_size, len(x))
    steps = max(1, len(x) // batch)
    per_step = _step_seconds(module, x, batch) * 1.5  # + the optimizer and the KD term
    affordable = int(config.max_seconds * 0.8 / max(per_step * steps, 1e-6))
    epochs = max(1, min(config.epochs, affordable))
    labels = data.frames.y if data.labelled else teacher.argmax(axis=1).astype(np.int64)
    fit_config = FitConfig(
        epochs=epochs,
        batch_size=batch,
        learning_rate=config.learning_rate,
        temperature=config.temperature,
        alpha=config.alpha if data.labelled else 1.0,
        max_seconds=config.max_seconds,
        seed=config.seed,
    )
    began = time.monotonic()
    report: FitReport | None = None
    try:
        report = fit(module, x, labels, fit_config, teacher_logits=teacher, cancel=cancel)
    except TrainingTimedOut:  # a host busier than at the estimate: keep the weights so far
        module.eval()
    info: dict[str, object] = {
        **data.describe(),
        "epochs": epochs,
        "epochs_wanted": config.epochs,
        "time_bound_s": config.max_seconds,
        "stopped_at_time_bound": report is None,
        "fit": report.to_dict() if report else {"seconds": round(time.monotonic() - began, 2)},
    }
    return report, info
