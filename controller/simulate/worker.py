"""One simulator process: enrolls its share of devices, holds their MQTT connections on one
pump thread, publishes heartbeats and telemetry on schedule, and follows desired states on a
small thread pool (the gRPC calls block)."""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from controller.simulate.device import (
    ReportMaker,
    SimIdentity,
    enroll,
    heartbeat_payload,
    status_payload,
)
from controller.simulate.errors import SimulationError
from controller.simulate.mqtt_pump import MqttPump
from edgefleet import mqtt as edgefleet_mqtt
from edgefleet import topics
from edgefleet.v1 import rollouts_pb2, rollouts_pb2_grpc, updates_pb2, updates_pb2_grpc

log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 30.0
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class WorkerSpec:
    tokens: tuple[str, ...]
    enroll_address: str
    ca_pem: bytes
    report_interval_s: float  # per device; 0 = no telemetry
    heartbeat_interval_s: float
    poll_interval_s: float  # desired-state pull (the MQTT push is the fast path)
    frames_per_report: int = 200
    threads: int = 8
    seed: int = 0


@dataclass
class SimDevice:
    identity: SimIdentity
    reports: ReportMaker
    channel: grpc.Channel
    model: str = ""
    variant: str = ""
    revision: int = -1  # desired-state revision last acted on
    busy: bool = False
    started: float = field(default_factory=time.monotonic)
    heartbeats: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.devices: list[SimDevice] = []
        self.clients: list[Any] = []  # each device's paho client, in the same order
        self.pump = MqttPump()
        self.stats: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(spec.threads, thread_name_prefix="sim-grpc")
        self._stats_lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # -- setup -------------------------------------------------------------------------------

    def enroll_all(self) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.spec.ca_pem)
        channel = grpc.secure_channel(self.spec.enroll_address, credentials)
        try:
            identities = list(
                self._pool.map(lambda t: enroll(channel, self.spec.ca_pem, t), self.spec.tokens)
            )
        finally:
            channel.close()
        for i, identity in enumerate(identities):
            seed = self.spec.seed * 1_000_003 + i
            maker = ReportMaker(identity.device_id, seed, self.spec.frames_per_report)
            self.devices.append(SimDevice(identity, maker, identity.channel()))
        self.count("enrolled", len(identities))

    def connect_all(self) -> None:
        for device in self.devices:
            client = self._mqtt_client(device)
            self.clients.append(client)
            self.pump.add(client, *self._broker(device.identity))

    def _broker(self, identity: SimIdentity) -> tuple[str, int]:
        address = edgefleet_mqtt.parse_broker_url(identity.mqtt_url)
        if address.tls:
            raise SimulationError("the simulator speaks plain mqtt:// only (mqtts: not yet)")
        return address.host, address.port

    def _mqtt_client(self, device: SimDevice) -> Any:
        ident = device.identity
        client = edgefleet_mqtt.new_client(
            ident.device_id, ident.mqtt_username, ident.mqtt_password, tls=False
        )
        status = topics.device_topic(ident.device_id, topics.STATUS)
        desired = topics.device_topic(ident.device_id, topics.DESIRED)
        client.will_set(status, status_payload(ident.device_id, False, unix_ms=0), 1, True)
        client.max_inflight_messages_set(50)

        def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                self.count("mqtt_refused")
                return
            self.count("mqtt_connects")
            c.publish(status, status_payload(ident.device_id, True), qos=1, retain=True)
            c.subscribe(desired, qos=1)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            self.count("desired_pushed")
            try:
                revision = int(json.loads(msg.payload).get("revision", 0))
            except (ValueError, AttributeError):
                revision = 0
            if revision != device.revision:
                self._follow(device)

        def on_publish(_c: Any, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
            self.count("acked")

        client.on_connect, client.on_message, client.on_publish = on_connect, on_message, on_publish
        return client

    # -- the schedule ------------------------------------------------------------------------

    def run(self, stop: threading.Event, deadline: float) -> None:
        """Heartbeats, telemetry and desired-state pulls until ``stop`` or ``deadline``."""
        rng = random.Random(self.spec.seed)
        due: list[tuple[float, int, str]] = []
        now = time.monotonic()
        for i, _ in enumerate(self.devices):
            heapq.heappush(due, (now + rng.uniform(0, self.spec.heartbeat_interval_s), i, "hb"))
            if self.spec.report_interval_s > 0:
                start = now + rng.uniform(0, self.spec.report_interval_s)
                heapq.heappush(due, (start, i, "report"))
            heapq.heappush(due, (now + rng.uniform(0, self.spec.poll_interval_s), i, "poll"))
        while not stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            while due and due[0][0] <= now:
                at, i, kind = heapq.heappop(due)
                device, client = self.devices[i], self.clients[i]
                if kind == "hb":
                    self._heartbeat(client, device)
                    interval = self.spec.heartbeat_interval_s
                elif kind == "report":
                    self._report(client, device)
                    interval = self.spec.report_interval_s
                else:
                    self._follow(device)
                    interval = self.spec.poll_interval_s
                # catch up without bursts when the pump fell behind
                heapq.heappush(due, (max(at + interval, now), i, kind))
            wait = min(0.05, max(0.0, due[0][0] - time.monotonic())) if due else 0.05
            self.pump.run_once(wait)

    def _heartbeat(self, client: Any, device: SimDevice) -> None:
        if not client.is_connected():
            return
        device.heartbeats += 1
        uptime = int(time.monotonic() - device.started)
        payload = heartbeat_payload(
            device.identity.device_id, device.heartbeats, uptime, device.variant
        )
        client.publish(topics.device_topic(device.identity.device_id, topics.HEARTBEAT), payload, 1)
        self.count("heartbeats")

    def _report(self, client: Any, device: SimDevice) -> None:
        if not client.is_connected():
            self.count("reports_skipped_offline")
            return
        payload = device.reports.next(device.model, device.variant)
        topic = topics.device_topic(device.identity.device_id, topics.TELEMETRY)
        if client.publish(topic, payload, 1).rc == 0:
            self.count("reports")
        else:
            self.count("reports_not_queued")

    # -- desired state (on the pool) ----------------------------------------------------------

    def _follow(self, device: SimDevice) -> None:
        with device.lock:
            if device.busy:
                return
            device.busy = True
        self._pool.submit(self._follow_now, device)

    def _follow_now(self, device: SimDevice) -> None:
        try:
            self._update(device)
        except (grpc.RpcError, SimulationError) as exc:
            self.count("update_errors")
            log.info("device=%s update: %s", device.identity.device_id, _describe(exc))
        finally:
            with device.lock:
                device.busy = False

    def _update(self, device: SimDevice) -> None:
        """What the agent's OTA does on the wire: pull, report, download, verify, report."""
        stub = rollouts_pb2_grpc.DesiredStateServiceStub(device.channel)
        got = stub.GetDesiredState(
            rollouts_pb2.GetDesiredStateRequest(current_variant=device.variant),
            timeout=RPC_TIMEOUT_S,
        )
        self.count("desired_pulled")
        if not got.assigned:
            return
        d = got.desired
        if d.variant_id == device.variant:
            if d.revision != device.revision:
                device.revision = d.revision
                self._tell(stub, device, "committed", d.variant_id, "already running", d.revision)
            return
        self._tell(stub, device, "downloading", d.variant_id, "", d.revision)
        self._download(device, d)
        self._tell(stub, device, "installed", d.variant_id, "", d.revision)
        device.model, device.variant, device.revision = d.model, d.variant_id, d.revision
        self._tell(stub, device, "committed", d.variant_id, "", d.revision)
        self.count("updates")

    def _tell(
        self, stub: Any, device: SimDevice, state: str, variant: str, reason: str, revision: int
    ) -> None:
        stub.ReportUpdateStatus(
            rollouts_pb2.ReportUpdateStatusRequest(
                state=state, variant_id=variant, reason=reason,
                current_variant=device.variant, revision=revision,
            ),
            timeout=RPC_TIMEOUT_S,
        )  # fmt: skip

    def _download(self, device: SimDevice, d: rollouts_pb2.DesiredState) -> None:
        if not 0 < d.length <= MAX_ARTIFACT_BYTES:
            raise SimulationError(f"artifact length {d.length} out of bounds")
        stub = updates_pb2_grpc.UpdateServiceStub(device.channel)
        digest, size = hashlib.sha256(), 0
        request = updates_pb2.DownloadArtifactRequest(target_path=d.target_path)
        for chunk in stub.DownloadArtifact(request, timeout=RPC_TIMEOUT_S):
            size += len(chunk.data)
            if size > d.length:
                raise SimulationError(f"artifact {d.target_path} longer than {d.length} bytes")
            digest.update(chunk.data)
        if size != d.length or digest.hexdigest() != d.sha256:
            raise SimulationError(f"artifact {d.target_path} does not match its length/sha256")
        self.count("downloaded_bytes", size)

    def close(self) -> None:
        for device, client in zip(self.devices, self.clients, strict=True):
            topic = topics.device_topic(device.identity.device_id, topics.STATUS)
            if client.is_connected():
                client.publish(topic, status_payload(device.identity.device_id, False), 1, True)
        self.pump.run_once(0.2)
        self.pump.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for device in self.devices:
            device.channel.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
