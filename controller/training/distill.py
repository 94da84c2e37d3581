"""Distillation given arrays: a student's preprocessing, a fixed augmented copy set of the
training frames (so the teacher answers exactly the frames the student trains on, once, not
every epoch), training and ONNX Runtime measurements (accuracy, batch-1 latency).

    pre = student_preprocessing(arch, frames)
    train = augmented(frames, copies=1)                      # originals + 1 augmented copy
    t = teacher_logits(teacher_onnx, teacher_pre, train.x)   # controller.training.teacher
    module, report = train_student(arch.build(1, 10), train.inputs(pre), train.y, config, t)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller.training.catalogue import Architecture
from controller.training.data import Frames
from controller.training.errors import TrainingDataError
from controller.training.loop import FitConfig, FitReport, fit
from edgefleet.modelmeta import Preprocessing

if TYPE_CHECKING:
    import torch

MAX_INPUT_BYTES = 1 << 30  # float32 training inputs held at once (augmented copies included)
MAX_COPIES = 4
LATENCY_RUNS = 200

# (fraction of training done 0..1, message)
TrainProgress = Callable[[float, str], None]


def frame_channels(frames: Frames) -> int:
    return 1 if frames.x.ndim == 3 else int(frames.x.shape[3])


def student_preprocessing(arch: Architecture, frames: Frames) -> Preprocessing:
    """The student's preprocessing: the catalogue entry's input size for these frames, their
    channel count, pixels to ``[-1, 1]`` (``(x / 255 - 0.5) / 0.5``), NCHW."""
    channels = frame_channels(frames)
    size = arch.input_size((int(frames.x.shape[1]), int(frames.x.shape[2])))
    return Preprocessing(
        size=size,
        channels=channels,
        scale=1.0 / 255.0,
        mean=(0.5,) * channels,
        std=(0.5,) * channels,
        layout="NCHW",
    )


def affordable_copies(frames: Frames, pre: Preprocessing, copies: int) -> int:
    """Augmented copies that keep the float32 inputs within MAX_INPUT_BYTES (>= 0); a
    TrainingDataError when even the originals do not fit."""
    per_frame = 4 * pre.channels * pre.size[0] * pre.size[1]
    fit_count = MAX_INPUT_BYTES // max(per_frame * len(frames), 1)
    if fit_count < 1:
        raise TrainingDataError(
            f"{len(frames)} frames of {list(pre.size)} need "
            f"{per_frame * len(frames) >> 20} MiB as float32 inputs, over the bound of "
            f"{MAX_INPUT_BYTES >> 20} MiB"
        )
    return int(max(0, min(copies, MAX_COPIES, fit_count - 1)))


def augmented(frames: Frames, copies: int, seed: int = 0) -> Frames:
    """The originals followed by ``copies`` augmented copies of every frame (seeded): each
    copy mirrored with probability 0.5 and, with probability 0.5, degraded like a camera in
    poor light (shift, blur, lost contrast, a lifted background, sensor noise) at a random
    severity up to 0.6 — the augmentation of examples/fashion's baseline student."""
    if copies <= 0:
        return frames
    rng = np.random.default_rng(seed)
    parts = [frames]
    for _ in range(copies):
        parts.append(Frames(_jitter(frames.x, rng), frames.y.copy()))
    return Frames.concat(parts)


def _jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    hwc = x if x.ndim == 4 else x[..., None]
    out = hwc.astype(np.float32)
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    degrade = np.flatnonzero(rng.random(n) < 0.5)
    severity = 0.6 * rng.random(len(degrade))
    for i, s in zip(degrade, severity, strict=True):
        out[i] = _degrade(out[i], float(s), rng)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out if x.ndim == 4 else out[..., 0]


def _degrade(frame: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """One H x W x C float frame (0..255) degraded at severity ``s`` (0..1)."""
    reach = max(1, round(1.0 + 2.5 * s))
    dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, size=2))
    f = np.roll(frame, (dy, dx), axis=(0, 1))
    if dy > 0:
        f[:dy] = 0
    elif dy < 0:
        f[dy:] = 0
    if dx > 0:
        f[:, :dx] = 0
    elif dx < 0:
        f[:, dx:] = 0
    if s > 0.3:  # defocus: a [1 2 1] / 4 blur in both directions
        f = np.pad(f, ((1, 1), (0, 0), (0, 0)), mode="edge")
        f = (f[:-2] + 2 * f[1:-1] + f[2:]) / 4
        f = np.pad(f, ((0, 0), (1, 1), (0, 0)), mode="edge")
        f = (f[:, :-2] + 2 * f[:, 1:-1] + f[:, 2:]) / 4
    contrast = 1.0 - 0.6 * s * (0.5 + 0.5 * rng.random())
    background = 255.0 * 0.3 * s * rng.random()
    noise = rng.normal(0.0, 6.0 + 50.0 * s, size=f.shape)
    return np.asarray(background + contrast * f + noise, dtype=np.float32)


def train_student(
    module: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: FitConfig,
    teacher: np.ndarray | None,
    *,
    progress: TrainProgress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[torch.nn.Module, FitReport]:
    """Fit ``module`` on inputs ``x`` (CE on ``y``, plus KD on ``teacher`` logits when given
    and ``config.alpha > 0``); progress is reported about 50 times per run."""
    if teacher is not None and teacher.shape[0] != len(x):
        raise TrainingDataError(f"{teacher.shape[0]} teacher answers for {len(x)} frames")
    every = [1]

    def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
        if progress is None:
            return
        done = ((epoch - 1) * steps + step) / (config.epochs * steps)
        every[0] = max(1, config.epochs * steps // 50)
        if step % every[0] == 0 or step == steps:
            progress(done, f"epoch {epoch}/{config.epochs} step {step}/{steps} loss {loss:.4f}")

    report = fit(
        module, x, y, config,
        teacher_logits=teacher if config.alpha > 0 else None,
        progress=on_step, cancel=cancel,
    )  # fmt: skip
    return module, report


def onnx_logits(path: Path, x: np.ndarray, batch: int = 512, threads: int = 0) -> np.ndarray:
    """An ONNX model's logits on float32 inputs (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean()) if len(y) else 0.0


def latency_ms(
    paths: Sequence[Path], sample: Sequence[np.ndarray], runs: int = LATENCY_RUNS
) -> list[float]:
    """Median batch-1 latency (ms, ONNX Runtime, 1 thread) of each model, measured
    interleaved (one run of each in turn) so load on the machine falls on all alike."""
    import onnxruntime as ort

    sessions = []
    for path in paths:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        sessions.append(
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        )
    feeds = [
        {s.get_inputs()[0].name: np.ascontiguousarray(x[:1])}
        for s, x in zip(sessions, sample, strict=True)
    ]
    for _ in range(20):
        for s, feed in zip(sessions, feeds, strict=True):
            s.run(None, feed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for k, (s, feed) in enumerate(zip(sessions, feeds, strict=True)):
            began = time.perf_counter()
            s.run(None, feed)
            times[k].append(time.perf_counter() - began)
    return [float(np.median(t) * 1000) for t in times]
