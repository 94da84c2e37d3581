"""Attack review: Offload requests naming models nobody serves cost the controller nothing
that lasts. The cloud-model lookup remembered every missed name (to retry it later) in a dict
without bound: one enrolled device sending fresh multi-MiB model names grew the controller by
their full size, call after call. Real controller, an enrolled device on the mutual-TLS port."""

from __future__ import annotations

import gc
from pathlib import Path

import grpc
import psutil
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from edgefleet.v1 import inference_pb2, inference_pb2_grpc
from tests.fleet import Admin, start_controller

MIB = 1 << 20


def rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / MIB


@pytest.mark.timeout(60)
def test_unknown_model_names_are_refused_without_being_kept(tmp_path: Path) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    channel = None
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
        channel = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 8 * MIB
        )
        stub = inference_pb2_grpc.OffloadServiceStub(channel)

        def offload(model: str) -> grpc.StatusCode:
            image = inference_pb2.EncodedImage(format="png", data=b"x")
            request = inference_pb2.OffloadRequest(model=model, image=image, frame_id="f")
            try:
                stub.Offload(request, timeout=30)
            except grpc.RpcError as refused:
                return refused.code()
            raise AssertionError(f"offload of model {model[:20]!r}... was answered")

        assert offload("no-such-model") == grpc.StatusCode.NOT_FOUND
        # the first calls settle gRPC's and the allocator's buffers; later ones must add nothing
        # (measured: they level off about 40 MiB above the start, whatever the names)
        codes = {offload(f"{i:04d}" + "m" * (2 * MIB)) for i in range(30)}
        before = rss_mib()
        codes |= {offload(f"{i:04d}" + "m" * (2 * MIB)) for i in range(30, 150)}  # 240 MiB
        grown = rss_mib() - before
        assert grown < 80, f"controller kept {grown:.0f} MiB of refused model names"
        # refused as what they are (before: the name echoed in the status details overflowed
        # the client's metadata limit, RESOURCE_EXHAUSTED)
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}, codes
    finally:
        if channel is not None:
            channel.close()
        admin.close()
        ctl.stop()
