"""Attack review: calls whose request never arrives cannot stall devices or operators.

gRPC's threaded server reads a unary call's request in a worker thread, after the call is
dispatched and before any handler (authentication included) runs. An unauthenticated peer on
the TLS port that opened 40 calls (operator methods, Enroll, or device methods) and never sent
their request held all 32 workers: heartbeats and operator calls timed out. Real controller,
an enrolled device, a real operator connection; the stalling peer has no credential at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from edgefleet.v1 import admin_pb2, device_pb2, device_pb2_grpc
from tests.conftest import TcpForwarder
from tests.fleet import Admin, start_controller

MIB = 1 << 20
STALLS = 40  # more than the controller's 32 workers
STALLED_METHODS = (
    "/edgefleet.v1.DeviceAdminService/ListDevices",
    "/edgefleet.v1.DeviceService/Enroll",
    "/edgefleet.v1.DeviceService/Heartbeat",  # a device method, on the operators' port
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", STALLED_METHODS)
def test_requests_that_never_arrive_do_not_hold_the_workers(tmp_path: Path, method: str) -> None:
    ctl = start_controller(tmp_path / "controller")
    admin = Admin(ctl)
    release = threading.Event()
    channels: list[grpc.Channel] = []
    calls: list[grpc.Future] = []
    device = None
    forwarder = None
    try:
        enroll(tmp_path / "cam", admin.address, admin.register("cam"), detect(), attempts=1)
        device = device_channel(
            f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 8 * MIB
        )
        heartbeat = device_pb2_grpc.DeviceServiceStub(device).Heartbeat
        assert heartbeat(device_pb2.HeartbeatRequest(), timeout=5).device_id

        def never_sent() -> Iterator[bytes]:
            release.wait()
            yield from ()

        ca = (tmp_path / "controller" / "pki" / "ca.pem").read_bytes()
        # from an address of its own: its missing tokens get it (not the operator) throttled
        forwarder = TcpForwarder(ctl.grpc_port, source_host="127.0.0.2")
        for _ in range(4):  # a few connections, like a peer that opens more when one fills
            channel = grpc.secure_channel(
                f"127.0.0.1:{forwarder.port}",
                grpc.ssl_channel_credentials(ca),
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            channels.append(channel)
            stall = channel.stream_unary(
                method, request_serializer=bytes, response_deserializer=bytes
            )
            calls += [stall.future(never_sent()) for _ in range(STALLS // 4)]
        time.sleep(1.0)  # every stalled call reached the server

        started = time.monotonic()
        assert heartbeat(device_pb2.HeartbeatRequest(), timeout=5).device_id
        assert len(admin.devices()) == 1
        assert time.monotonic() - started < 5
    finally:
        release.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
        if device is not None:
            device.close()
        if forwarder is not None:
            forwarder.close()
        admin.close()
        ctl.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("staller", ["revoked", "enrolled"])
def test_a_device_cannot_hold_the_device_workers_with_requests_it_never_sends(
    tmp_path: Path, staller: str
) -> None:
    """On the mutual-TLS port: a revoked device (its certificate still passes the handshake)
    is refused before its request is read; an enrolled one may have 8 calls waiting for their
    request, each for the read timeout (10 s by default, 2 s here). Before, 40 such calls of
    either held all 32 workers."""
    ctl = start_controller(tmp_path / "controller", request_read_timeout_s=2.0)
    admin = Admin(ctl)
    release = threading.Event()
    channels: list[grpc.Channel] = []
    calls: list[grpc.Future] = []
    try:
        for name in ("cam", "staller"):
            enroll(tmp_path / name, admin.address, admin.register(name), detect(), attempts=1)
        if staller == "revoked":
            admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="staller"), timeout=10)
        channels.append(
            device_channel(
                f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "cam"), 8 * MIB
            )
        )
        heartbeat = device_pb2_grpc.DeviceServiceStub(channels[0]).Heartbeat

        def never_sent() -> Iterator[bytes]:
            release.wait()
            yield from ()

        for _ in range(4):
            channel = device_channel(
                f"127.0.0.1:{ctl.device_port}", Credentials.load(tmp_path / "staller"), 8 * MIB
            )
            channels.append(channel)
            stall = channel.stream_unary(
                "/edgefleet.v1.DeviceService/Heartbeat",
                request_serializer=bytes,
                response_deserializer=bytes,
            )
            calls += [stall.future(never_sent()) for _ in range(STALLS // 4)]
        time.sleep(1.0)

        started = time.monotonic()
        assert heartbeat(device_pb2.HeartbeatRequest(), timeout=5).device_id
        assert time.monotonic() - started < 5
        refused = [c for c in calls if c.done()]
        expected = (
            grpc.StatusCode.UNAUTHENTICATED
            if staller == "revoked"
            else grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert len(refused) >= STALLS - 8 and {c.code() for c in refused} == {expected}
        # the ones still waiting for their request are cancelled by the controller
        assert all(c.exception(timeout=15) is not None for c in calls)
    finally:
        release.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
        admin.close()
        ctl.stop()


@pytest.mark.timeout(60)
def test_stalled_enrollments_of_one_address_leave_enrollment_to_others(tmp_path: Path) -> None:
    """An unauthenticated peer (127.0.0.2) with 16 enrollments that never send their request
    may hold 2 enrollment slots, each for at most the read timeout (2 s here); a device
    enrolling from another address meanwhile is enrolled. Before, the peer held every
    enrollment slot for as long as it liked and the device was refused RESOURCE_EXHAUSTED."""
    ctl = start_controller(tmp_path / "controller", request_read_timeout_s=2.0)
    admin = Admin(ctl)
    release = threading.Event()
    calls: list[grpc.Future] = []
    forwarder = TcpForwarder(ctl.grpc_port, source_host="127.0.0.2")
    channel = None
    try:
        ca = (tmp_path / "controller" / "pki" / "ca.pem").read_bytes()
        channel = grpc.secure_channel(
            f"127.0.0.1:{forwarder.port}",
            grpc.ssl_channel_credentials(ca),
            options=[("grpc.use_local_subchannel_pool", 1)],
        )

        def never_sent() -> Iterator[bytes]:
            release.wait()
            yield from ()

        stall = channel.stream_unary(
            "/edgefleet.v1.DeviceService/Enroll",
            request_serializer=bytes,
            response_deserializer=bytes,
        )
        calls = [stall.future(never_sent()) for _ in range(16)]
        time.sleep(1.0)
        token = admin.register("cam")
        identity = enroll(tmp_path / "cam", admin.address, token, detect(), attempts=1)
        assert identity.device_id
        refused = [c for c in calls if c.done()]
        assert len(refused) >= 14
        assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all(c.exception(timeout=15) is not None for c in calls)  # the 2 end too
    finally:
        release.set()
        for call in calls:
            call.cancel()
        if channel is not None:
            channel.close()
        forwarder.close()
        admin.close()
        ctl.stop()
