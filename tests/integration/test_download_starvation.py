"""One device cannot starve the controller's gRPC workers with DownloadArtifact streams it
never reads: a real controller on loopback (16 workers), real enrolled devices on the mutual-TLS
port, a real built variant artifact. The hostile device reaches the controller through a
forwarder that stops reading what the controller sends (what a device that opens streams and
never reads them looks like from the server: its socket buffers fill and sends block)."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest

from agent.controller_client import ControllerClient, device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from controller.app import Controller
from edgefleet.v1 import updates_pb2, updates_pb2_grpc
from tests.conftest import wait_until
from tests.fleet import Admin, start_controller
from tests.rollout_fleet import add_and_build

WORKERS = 16
STREAMS = 2 * WORKERS  # far more unread streams than workers
PER_DEVICE = 2  # the controller's bound on one device's concurrent downloads (4 in all)
ENDED_WITHIN_S = 20.0  # stalled streams are cancelled, the silent connection closed
MIB = 1 << 20


class StallingForwarder:
    """A loopback TCP forwarder to `target_port` that, once stalled, forwards what the client
    sends but no longer reads what the server answers."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.stalled = threading.Event()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError), client, upstream:
            while not self._stop.is_set():
                watched = [client] if self.stalled.is_set() else [client, upstream]
                ready, _, _ = select.select(watched, [], [], 0.05)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def device(ctl: Controller, admin: Admin, data_dir: Path, name: str, address: str) -> grpc.Channel:
    enroll(data_dir, f"127.0.0.1:{ctl.grpc_port}", admin.register(name), detect())
    return device_channel(address, Credentials.load(data_dir), 8 * MIB)


def download(stub: updates_pb2_grpc.UpdateServiceStub, sha256: str) -> int:
    chunks = stub.DownloadArtifact(updates_pb2.DownloadArtifactRequest(sha256=sha256), timeout=20)
    return sum(len(chunk.data) for chunk in chunks)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_unread_downloads_do_not_starve_heartbeats_or_operators(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.grpc.stream_guard")
    caplog.set_level(logging.DEBUG, logger="controller.grpc.request_guard")
    ctl = start_controller(tmp_path / "controller", grpc_workers=WORKERS)
    admin = Admin(ctl)
    forwarder = StallingForwarder(ctl.device_port)
    channels: list[grpc.Channel] = []
    streams: list[grpc.Future] = []
    try:
        add_and_build(admin, tmp_path, "wide", 160)  # a ~5 MB fp32 artifact
        direct = f"127.0.0.1:{ctl.device_port}"
        honest_channel = device(ctl, admin, tmp_path / "honest", "honest", direct)
        hostile_channel = device(
            ctl, admin, tmp_path / "hostile", "hostile", f"127.0.0.1:{forwarder.port}"
        )
        channels += [honest_channel, hostile_channel]
        hostile = updates_pb2_grpc.UpdateServiceStub(hostile_channel)
        candidates = hostile.ListBenchCandidates(
            updates_pb2.ListBenchCandidatesRequest(model="wide"), timeout=10
        ).candidates
        assert candidates and candidates[0].size > 2 * MIB, candidates
        artifact = candidates[0]
        request = updates_pb2.DownloadArtifactRequest(sha256=artifact.sha256)

        forwarder.stalled.set()  # from here on the hostile device reads nothing
        attack = time.monotonic()
        streams += [hostile.DownloadArtifact(request, timeout=120) for _ in range(STREAMS)]
        time.sleep(1.5)  # the server has picked every stream up

        honest = ControllerClient(honest_channel, timeout_s=3.0)
        started = time.monotonic()
        for _ in range(5):
            assert honest.heartbeat("test").device_id
            assert admin.devices()  # the operator API shares the same workers
        took = time.monotonic() - started
        assert took < 5.0, f"heartbeats and ListDevices took {took:.1f}s"
        honest_updates = updates_pb2_grpc.UpdateServiceStub(honest_channel)
        assert download(honest_updates, artifact.sha256) == artifact.size  # slots left for it
        # refused by the stream guard, or before their request was read (controller/grpc/
        # request_guard.py: a device's calls sending their request at once are bounded too)
        refusals = [
            r
            for r in caplog.records
            if "stream refused" in r.getMessage() or "no free read slot" in r.getMessage()
        ]
        assert len(refusals) >= STREAMS - PER_DEVICE, len(refusals)

        # the streams the controller took end: cancelled, the silent connection closed
        time.sleep(max(0.0, ENDED_WITHIN_S - (time.monotonic() - attack)))
        forwarder.stalled.clear()
        assert wait_until(lambda: all(s.done() for s in streams), 10.0)
        codes = {s.code() for s in streams}
        assert grpc.StatusCode.OK not in codes, codes
        # the device's slots are free again: it downloads on a new connection
        again = device_channel(f"127.0.0.1:{forwarder.port}",
                               Credentials.load(tmp_path / "hostile"), 8 * MIB)  # fmt: skip
        channels.append(again)
        for _ in range(PER_DEVICE + 1):
            assert download(updates_pb2_grpc.UpdateServiceStub(again), artifact.sha256) == (
                artifact.size
            )
        assert honest.heartbeat("test").device_id
    finally:
        for stream in streams:
            stream.cancel()
        forwarder.close()
        for channel in channels:
            channel.close()
        admin.close()
        ctl.stop()
