"""Training frames: an ``.npz`` (arrays ``x`` frames, ``y`` labels) or a directory of MNIST-style
IDX files (``train-images-idx3-ubyte[.gz]`` + ``train-labels-idx1-ubyte[.gz]``, as Debian's
``dataset-fashion-mnist`` ships them), bounded in count and bytes before anything is decoded.

    frames = load_frames(Path("/usr/share/datasets/fashion-mnist"))
    x = frames.inputs(preprocessing)        # float32, the agent's own arithmetic
"""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.training.errors import TrainingDataError
from edgefleet.frames import frames_tensor
from edgefleet.modelmeta import Preprocessing

MAX_FRAMES = 200_000
MAX_FRAME_SIDE = 1024
MAX_DECODED_BYTES = 1 << 30  # 1 GiB of uint8 frames
IDX_IMAGES, IDX_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@dataclass(frozen=True)
class Frames:
    """Raw frames (N x H x W [x C], uint8) and their int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim not in (3, 4) or self.x.dtype != np.uint8:
            raise TrainingDataError(
                f"frames must be uint8 N x H x W [x C], got {self.x.dtype} {list(self.x.shape)}"
            )
        if max(self.x.shape[1:3]) > MAX_FRAME_SIDE:
            raise TrainingDataError(f"frames larger than {MAX_FRAME_SIDE} px are refused")
        if self.y.shape != (len(self.x),):
            raise TrainingDataError(
                f"{len(self.x)} frames but labels of shape {list(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.x)

    def check_classes(self, num_classes: int) -> None:
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= num_classes):
            raise TrainingDataError(
                f"labels must be 0..{num_classes - 1} for this model, found "
                f"{int(self.y.min())}..{int(self.y.max())}"
            )

    def subset(self, index: np.ndarray) -> Frames:
        return Frames(self.x[index], self.y[index])

    def inputs(self, pre: Preprocessing) -> np.ndarray:
        """Float32 model inputs, laid out as ``pre.layout``."""
        return frames_tensor(self.x, pre)

    @staticmethod
    def concat(parts: list[Frames]) -> Frames:
        if not parts:
            raise TrainingDataError("no training frames")
        shapes = {p.x.shape[1:] for p in parts}
        if len(shapes) != 1:
            raise TrainingDataError(f"training frames of different shapes: {sorted(shapes)}")
        return Frames(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def load_frames(path: Path, limit: int = MAX_FRAMES) -> Frames:
    """Frames from an ``.npz`` or an IDX directory; TrainingDataError for anything else."""
    if path.is_dir():
        return _load_idx(path, limit)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file or directory")
    return _load_npz(path, limit)


def _load_npz(path: Path, limit: int) -> Frames:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise TrainingDataError(f"{path.name} needs arrays x (frames) and y (labels)")
            with zipfile.ZipFile(path) as archive:  # the decoded size, before decoding
                size = archive.getinfo("x.npy").file_size
            if size > MAX_DECODED_BYTES:
                raise TrainingDataError(f"{path.name}: {size} bytes of frames, over the bound")
            x, y = data["x"], data["y"]
    except TrainingDataError:
        raise
    except Exception as exc:  # not a zip, a pickled array, a truncated file...
        raise TrainingDataError(
            f"{path.name} is not a readable .npz ({type(exc).__name__})"
        ) from exc
    if len(x) > limit:
        raise TrainingDataError(f"{path.name} holds {len(x)} frames, over the bound of {limit}")
    return Frames(np.asarray(x), np.asarray(y).astype(np.int64))


def _idx_file(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise TrainingDataError(f"{directory} has no {stem}[.gz] (an MNIST-style IDX directory)")


def _read_idx(path: Path, limit: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\0\0" or header[2] != 0x08:
            raise TrainingDataError(f"{path.name} is not an IDX file of unsigned bytes")
        dims = tuple(int.from_bytes(f.read(4), "big") for _ in range(header[3]))
        if not dims or dims[0] > limit or int(np.prod(dims, dtype=np.int64)) > MAX_DECODED_BYTES:
            raise TrainingDataError(f"{path.name}: dimensions {list(dims)} over the bounds")
        data = f.read(int(np.prod(dims, dtype=np.int64)))
    try:
        return np.frombuffer(data, np.uint8).reshape(dims)
    except ValueError as exc:
        raise TrainingDataError(f"{path.name} is truncated") from exc


def _load_idx(directory: Path, limit: int) -> Frames:
    x = _read_idx(_idx_file(directory, IDX_IMAGES), limit)
    y = _read_idx(_idx_file(directory, IDX_LABELS), limit)
    return Frames(x.copy(), y.astype(np.int64))
