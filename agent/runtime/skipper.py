"""Skip frames that barely differ from the last processed one."""

from __future__ import annotations

import numpy as np


class FrameSkipper:
    """`should_skip(frame)` is True when the mean absolute difference to the last *processed*
    frame is below `threshold` (in frame units, e.g. 0..255 for uint8). Threshold 0 never skips.
    """

    def __init__(self, threshold: float) -> None:
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.threshold = threshold
        self.skipped = 0
        self._last: np.ndarray | None = None

    def should_skip(self, frame: np.ndarray) -> bool:
        current = np.asarray(frame, dtype=np.float32)
        last = self._last
        if (
            self.threshold > 0
            and last is not None
            and last.shape == current.shape
            and float(np.mean(np.abs(current - last))) < self.threshold
        ):
            self.skipped += 1
            return True
        self._last = current
        return False
