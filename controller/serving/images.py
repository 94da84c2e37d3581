"""Encoded images (PNG, JPEG, ...) -> frames."""

from __future__ import annotations

import io

import numpy as np

from controller.serving.errors import MalformedFrame


def decode_image(data: bytes, fmt: str = "") -> np.ndarray:
    """An encoded image as an H x W (greyscale) or H x W x 3 uint8 frame; MalformedFrame when
    it does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            decoded = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
            return np.asarray(decoded)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise MalformedFrame(f"cannot decode {fmt or 'image'}: {exc}") from exc
