"""Training frames for the training stages, checked and uploaded: an ``.npz`` (``x`` uint8
frames, ``y`` labels) goes up as it is, an MNIST-style IDX directory is packed into one first.

    digest = upload_training_frames(conn, stub, Path("/usr/share/datasets/fashion-mnist"))
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def upload_training_frames(conn: Any, stub: Any, path: Path) -> str:
    """The artifact digest of the frames at ``path``; TrainingDataError (one line) for a
    missing file, a file that is not frames and labels, or frames over the bounds."""
    import numpy as np

    from controller.cli.models import _upload
    from controller.training.data import load_frames

    frames = load_frames(path)  # before anything is uploaded
    if path.is_file():
        return _upload(conn, stub, path)
    with tempfile.TemporaryDirectory() as tmp:
        packed = Path(tmp) / "frames.npz"
        np.savez(packed, x=frames.x, y=frames.y)
        return _upload(conn, stub, packed)
