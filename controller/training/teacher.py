"""A teacher's answers on training frames: its ONNX model in ONNX Runtime, batched, with its
own preprocessing, cached on disk by (teacher digest, frames digest) so a second student
trained from the same teacher and data does not pay for the teacher's forward passes again.

    logits = teacher_logits(Path("cloud.onnx"), pre, frames.x, cache_dir=Path("cache"))
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgefleet.frames import frames_tensor
from edgefleet.modelmeta import Preprocessing

BATCH = 256

# (frames answered, frames in all)
TeacherProgress = Callable[[int, int], None]


def _digest(path: Path, frames: np.ndarray, pre: Preprocessing) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(repr(pre).encode())
    h.update(repr(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()[:32]


def teacher_logits(
    onnx_path: Path,
    pre: Preprocessing,
    frames: np.ndarray,
    *,
    cache_dir: Path | None = None,
    threads: int = 0,
    progress: TeacherProgress | None = None,
) -> np.ndarray:
    """float32 [N, classes] logits of the teacher on raw uint8 frames."""
    import onnxruntime as ort

    cached = None
    if cache_dir is not None:
        cached = cache_dir / f"teacher-{_digest(onnx_path, frames, pre)}.npy"
        if cached.is_file():
            return np.load(cached, allow_pickle=False)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for i in range(0, len(frames), BATCH):
        out.append(session.run(None, {name: frames_tensor(frames[i : i + BATCH], pre)})[0])
        if progress is not None:
            progress(min(i + BATCH, len(frames)), len(frames))
    logits = np.concatenate(out).astype(np.float32)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, logits)
        os.replace(tmp, cached)
    return logits
