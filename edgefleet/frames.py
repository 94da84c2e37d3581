"""Frame -> model input, the one definition both sides use.

The build evaluates variants, the agent runs them and the controller's cloud model answers
offloads with exactly this arithmetic, so a variant's measured accuracy is the accuracy it has
on a device. A frame (H x W [x C], uint8 or float) gets the channel count the model wants
(greyscale replicated, colour averaged, alpha dropped), is resized with Pillow's bilinear
filter in 32-bit float when its size differs, then scaled, normalized per channel and laid out.
"""

from __future__ import annotations

import numpy as np

from edgefleet.errors import InvalidInput
from edgefleet.modelmeta import Preprocessing


def as_hwc(frame: np.ndarray) -> np.ndarray:
    """A frame as H x W x C; InvalidInput when it is not an image."""
    if not isinstance(frame, np.ndarray):
        raise InvalidInput(f"a frame must be a numpy array, not {type(frame).__name__}")
    if frame.dtype != np.uint8 and not np.issubdtype(frame.dtype, np.floating):
        raise InvalidInput(f"frame dtype must be uint8 or float, not {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidInput(f"frame must be H x W or H x W x C, got shape {frame.shape}")
    return frame


def fit_frame(frame: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Float32 H x W x C at the model's size and channel count, before scaling."""
    x = as_hwc(frame)
    have, want = x.shape[2], pre.channels
    if have in (3, 4) and want == 1:
        x = x[:, :, :3].astype(np.float32).mean(axis=2, keepdims=True)
    elif have == 4 and want == 3:
        x = x[:, :, :3]
    elif have != want and not (have == 1 and want == 3):
        raise InvalidInput(f"frame has {have} channels, the model wants {want}")
    height, width = pre.size
    if x.shape[:2] != (height, width):
        x = resize(x, height, width)  # before replicating a greyscale plane: one resize, not 3
    x = x.astype(np.float32, copy=False)
    if x.shape[2] == 1 and want == 3:
        x = np.repeat(x, 3, axis=2)
    return x


def resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of each plane of an H x W x C frame as a 32-bit float image."""
    from PIL import Image  # imported only when a resize is needed

    planes = [
        np.asarray(
            Image.fromarray(frame[:, :, c].astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(frame.shape[2])
    ]
    return np.stack(planes, axis=2)


def normalize(x: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Float32 N x H x W x C at the model's size -> scaled, normalized, laid out tensor."""
    mean = np.broadcast_to(np.asarray(pre.mean, np.float32), (pre.channels,))
    std = np.broadcast_to(np.asarray(pre.std, np.float32), (pre.channels,))
    out = (x * np.float32(pre.scale) - mean) / std
    if pre.layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def frame_tensor(frame: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """One frame -> a float32 batch-1 tensor."""
    return normalize(fit_frame(frame, pre)[None], pre)


def frames_tensor(frames: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """N frames (N x H x W [x C]) -> a float32 batch-N tensor."""
    if len(frames) == 0:
        return np.zeros((0, *_tensor_shape(pre)), np.float32)
    return normalize(np.stack([fit_frame(f, pre) for f in frames]), pre)


def _tensor_shape(pre: Preprocessing) -> tuple[int, int, int]:
    height, width = pre.size
    if pre.layout == "NCHW":
        return (pre.channels, height, width)
    return (height, width, pre.channels)
