"""Offload images are bounded before they are decoded: a real controller serving the digits
cloud model (32 x 32 input), an enrolled device on the mutual-TLS port sending PNG bombs
(a few hundred KB that decode to 12000 x 12000 and 20000 x 20000 pixels)."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from edgefleet.v1 import inference_pb2, inference_pb2_grpc
from tests.conftest import REPO
from tests.fleet import Admin, start_controller

DIGITS = REPO / "examples" / "digits"
MIB = 1 << 20


def png_bomb(width: int, height: int) -> bytes:
    """A greyscale PNG of zeros, compressed row by row (never held decoded here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    squeeze = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.timeout(120)
def test_png_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    ctl = start_controller(
        tmp_path / "controller", cloud_models=(f"digits={DIGITS / 'edge.onnx'}",)
    )
    admin = Admin(ctl)
    channel = None
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
        identity_dir = tmp_path / "cam"
        channel = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(identity_dir), 8 * MIB
        )
        stub = inference_pb2_grpc.OffloadServiceStub(channel)

        def offload(data: bytes) -> inference_pb2.OffloadResponse:
            image = inference_pb2.EncodedImage(format="png", data=data)
            request = inference_pb2.OffloadRequest(model="digits", image=image, frame_id="f")
            return stub.Offload(request, timeout=30)

        assert offload(png(640, 480)).model_id  # a camera frame is answered
        bombs = [png_bomb(12000, 12000), png_bomb(20000, 20000), png_bomb(1200, 10)]
        assert max(len(b) for b in bombs) < 1 * MIB
        before = peak_rss_mib()
        for bomb in bombs:
            with pytest.raises(grpc.RpcError) as refused:
                offload(bomb)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value
            assert "pixels" in str(refused.value.details()), refused.value.details()
        grew = peak_rss_mib() - before
        assert grew < 64, f"peak RSS grew by {grew:.0f} MiB"
        assert offload(png(32, 32)).model_id
    finally:
        if channel is not None:
            channel.close()
        admin.close()
        ctl.stop()
