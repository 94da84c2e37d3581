"""Frame sources: iterators of (frame_id, frame) over image directories, arrays and video."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent.runtime.errors import FrameSourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})


class ImageDirectorySource:
    """Images of a directory in name order; corrupt files are counted and skipped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt = 0

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        from PIL import Image, UnidentifiedImageError

        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as opened:
                    opened.load()
                    image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
                    frame = np.asarray(image)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                self.corrupt += 1
                log.warning("skipping corrupt image %s: %s", path, exc)
                continue
            yield path.name, frame


class ArraySource:
    """Frames of a .npy array or the `x` array of a .npz archive (N x H x W [x C])."""

    def __init__(self, path: Path, key: str = "x") -> None:
        self.path = path
        self.key = key

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        try:
            if self.path.suffix == ".npz":
                with np.load(self.path) as archive:
                    frames = archive[self.key]
            else:
                frames = np.load(self.path)
        except (OSError, KeyError, ValueError) as exc:
            raise FrameSourceError(f"cannot read frames from {self.path}: {exc}") from exc
        for index, frame in enumerate(frames):
            yield f"{self.path.stem}:{index}", frame


class VideoSource:
    """A video file or camera index, through OpenCV (the optional `video` extra)."""

    def __init__(self, source: str | int, max_frames: int | None = None) -> None:
        try:
            import cv2  # noqa: F401
        except ImportError as exc:
            raise FrameSourceError(
                "video and camera sources need OpenCV: pip install 'edgefleet[video]'"
            ) from exc
        self.source = source
        self.max_frames = max_frames

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        import cv2

        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            raise FrameSourceError(f"cannot open video source {self.source!r}")
        try:
            index = 0
            while self.max_frames is None or index < self.max_frames:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield f"{self.source}:{index}", bgr[:, :, ::-1].copy()
                index += 1
        finally:
            capture.release()


def open_source(
    spec: str | Path,
) -> ImageDirectorySource | ArraySource | VideoSource:
    """Pick a source from a path or camera spec ("camera:0" or a bare integer)."""
    text = str(spec)
    if text.isdigit() or text.startswith("camera:"):
        return VideoSource(int(text.removeprefix("camera:")))
    path = Path(text)
    if path.is_dir():
        return ImageDirectorySource(path)
    if not path.exists():
        raise FrameSourceError(f"frame source {path} does not exist")
    if path.suffix in (".npy", ".npz"):
        return ArraySource(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(str(path))
    raise FrameSourceError(f"unsupported frame source {path}")
