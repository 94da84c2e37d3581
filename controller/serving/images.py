"""Encoded images (PNG, JPEG, ...) -> frames, refused by their header when too large.

An image is bounded before a byte of it is decoded: a small PNG can decode to 12000 x 12000
pixels (hundreds of MiB). Sides may be at most ``SCALE`` times the cloud model's input side
(it is resized to that input anyway) and the pixel count at most ``MAX_PIXELS``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from controller.serving.errors import MalformedFrame

SCALE = 32  # a frame side may be this many times the model's input side
MAX_SIDE = 8192
MAX_PIXELS = 1 << 23  # 8.4 Mpx: a 4K UHD frame (3840 x 2160) fits


@dataclass(frozen=True)
class FrameLimits:
    max_height: int
    max_width: int
    max_pixels: int = MAX_PIXELS

    @classmethod
    def for_input(cls, input_size: tuple[int, int]) -> FrameLimits:
        """The bounds for a model whose input is `input_size` (height, width)."""
        height, width = input_size
        return cls(min(MAX_SIDE, SCALE * height), min(MAX_SIDE, SCALE * width))

    def check(self, height: int, width: int) -> None:
        if height <= 0 or width <= 0:
            raise MalformedFrame(f"frame of {width} x {height} pixels is empty")
        if height > self.max_height or width > self.max_width or height * width > self.max_pixels:
            raise MalformedFrame(
                f"frame of {width} x {height} pixels is larger than this model takes "
                f"(at most {self.max_width} x {self.max_height}, {self.max_pixels} pixels)"
            )


def decode_image(data: bytes, fmt: str, limits: FrameLimits) -> np.ndarray:
    """An encoded image as an H x W (greyscale) or H x W x 3 uint8 frame; MalformedFrame when
    it does not decode or its header says it is beyond `limits` (then it is not decoded)."""
    from PIL import Image, UnidentifiedImageError

    what = fmt or "image"
    try:
        with warnings.catch_warnings():  # limits.check bounds it, far below Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))  # reads the header only
        with opened:
            width, height = opened.size
            limits.check(height, width)
            opened.load()
            decoded = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
            frame = np.asarray(decoded)
    except Image.DecompressionBombError as exc:  # Pillow's own, far larger bound
        raise MalformedFrame(f"{what} is too large to decode: {exc}") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise MalformedFrame(f"cannot decode {what}: {exc}") from exc
    if frame.shape[:2] != (height, width):  # a decoder that disagrees with its header
        raise MalformedFrame(
            f"{what} decoded to {frame.shape[:2]}, its header said {height, width}"
        )
    return frame
