"""The Mosquitto the controller supervises, attacked through the real path.

A real ``MosquittoBroker`` on port 0 in ``tmp_path``, the real ``ControllerMqttIngest`` and real
``AgentMqttClient`` devices; the attacker is a raw paho client. Each test is one item of the
hardening issue: session hijack, retained leaks, revocation, packet size, sockets that never
send CONNECT, a killed broker, a clean stop.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.credentials import generate_password, hash_password
from controller.mqtt.errors import BrokerError
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from controller.mqtt.mosquitto import MosquittoBroker
from controller.mqtt.mosquitto_conf import BrokerLimits, find_mosquitto
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
from tests.conftest import REPO, wait_until
from tests.integration.test_mqtt_brokers import RecordingSink

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

TIMEOUT = 5.0
CONTROLLER_PASSWORD = generate_password()
LIMITS = BrokerLimits(max_packet_bytes=64 * 1024, max_connections=20)


@dataclass
class Fleet:
    broker: MosquittoBroker
    ingest: ControllerMqttIngest
    sink: RecordingSink
    passwords: dict[str, str]
    allowed: dict[str, str] = field(default_factory=dict)  # device id -> $7$ hash

    def agent(self, device_id: str, **kw: Any) -> AgentMqttClient:
        client = AgentMqttClient(
            AgentMqttConfig(
                url=self.broker.url,
                device_id=device_id,
                username=device_id,
                password=self.passwords[device_id],
                connect_timeout_s=TIMEOUT,
                reconnect_max_delay_s=1,
                heartbeat_interval_s=kw.pop("heartbeat_interval_s", 60),
                **kw,
            )
        )
        client.start()
        assert client.wait_connected(TIMEOUT), f"{device_id} did not connect"
        return client

    def revoke(self, device_id: str) -> None:
        del self.allowed[device_id]
        self.broker.credentials_changed()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    passwords = {d: generate_password() for d in ("dev-a", "dev-b")}
    allowed = {d: hash_password(p) for d, p in passwords.items()}
    broker = MosquittoBroker(
        tmp_path / "mosquitto",
        host="127.0.0.1",
        port=0,
        controller_password=CONTROLLER_PASSWORD,
        credentials=lambda: list(allowed.items()),
        limits=LIMITS,
    )
    broker.start(TIMEOUT)
    sink = RecordingSink()
    ingest = ControllerMqttIngest(
        IngestConfig(
            url=broker.ingest_url,
            password=CONTROLLER_PASSWORD,
            connect_timeout_s=TIMEOUT,
            reconnect_max_delay_s=1,
        ),
        sink,
    )
    ingest.start()
    try:
        assert ingest.wait_connected(TIMEOUT)
        yield Fleet(broker, ingest, sink, passwords, allowed)
    finally:
        ingest.stop()
        broker.stop(TIMEOUT)


class Raw:
    """A raw paho client: the attacker, or a probe that records what reaches it."""

    def __init__(self, port: int, client_id: str, username: str | None, password: str = ""):
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: list[mqtt.ReasonCode] = []
        self.received: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self._connacked = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self._connacked.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: mqtt.ReasonCode, _p: Any) -> None:
        self.connack.append(reason)
        self._connacked.set()

    @property
    def accepted(self) -> bool:
        return not self.connack[0].is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _statuses(sink: RecordingSink, device_id: str) -> list[bool]:
    return [online for dev, online, _, _ in sink.statuses if dev == device_id]


def _desired_recorder() -> tuple[list[bytes], Callable[[bytes], None]]:
    got: list[bytes] = []
    return got, got.append


def test_connect_with_a_live_clients_id_does_not_disturb_it(fleet: Fleet) -> None:
    got, on_desired = _desired_recorder()
    device = fleet.agent("dev-a")
    device.on_desired(on_desired)
    assert wait_until(lambda: _statuses(fleet.sink, "dev-a") == [True], TIMEOUT)
    try:
        ports = (fleet.broker.port, fleet.broker.controller_port)
        ids = ("edgefleet-controller-ingest", CONTROLLER_USERNAME, "dev-a")
        for port in ports:
            for client_id in ids:
                for username, password in ((None, ""), (client_id, "wrong"), ("dev-zzz", "x")):
                    attacker = Raw(port, client_id, username, password)
                    assert not attacker.accepted
                    attacker.close()
        # a device holding valid credentials reuses the victims' ids: its client id becomes its
        # own username (use_username_as_clientid), so nobody else's session is touched
        for client_id in ids:
            insider = Raw(fleet.broker.port, client_id, "dev-b", fleet.passwords["dev-b"])
            assert insider.accepted
            insider.close()

        fleet.ingest.publish_desired("dev-a", b"after-attack", timeout=TIMEOUT)
        assert wait_until(lambda: got == [b"after-attack"], TIMEOUT)
        device.publish_heartbeat()
        assert wait_until(lambda: any(d == "dev-a" for d, _ in fleet.sink.heartbeats), TIMEOUT)
        assert fleet.ingest.stats.disconnects == 0
        assert device.connected and _statuses(fleet.sink, "dev-a") == [True]
    finally:
        device.stop(TIMEOUT)


def test_retained_desired_state_of_another_device_is_not_delivered(fleet: Fleet) -> None:
    fleet.ingest.publish_desired("dev-b", b"secret-of-b", timeout=TIMEOUT)
    fleet.ingest.publish_desired("dev-a", b"for-a", timeout=TIMEOUT)
    probe = Raw(fleet.broker.port, "dev-a", "dev-a", fleet.passwords["dev-a"])
    try:
        probe.client.subscribe(
            [
                ("#", 1),
                (topics.subscription(topics.DESIRED), 1),
                (topics.device_topic("dev-b", topics.DESIRED), 1),
                (topics.device_topic("dev-b", topics.STATUS), 1),
                (topics.device_topic("dev-a", topics.DESIRED), 1),
            ]
        )
        assert probe.subscribed.wait(TIMEOUT)
        own = topics.device_topic("dev-a", topics.DESIRED)
        assert wait_until(lambda: (own, b"for-a") in probe.received, TIMEOUT)
        time.sleep(0.5)  # anything else retained would have arrived with it
        assert {topic for topic, _ in probe.received} == {own}
        assert all(payload == b"for-a" for _, payload in probe.received)
    finally:
        probe.close()


def test_revoked_device_is_disconnected_and_refused(fleet: Fleet) -> None:
    revoked = fleet.agent("dev-b", heartbeat_interval_s=0.2)
    kept = fleet.agent("dev-a", heartbeat_interval_s=0.2)
    try:
        assert wait_until(lambda: _statuses(fleet.sink, "dev-b") == [True], TIMEOUT)
        revoked_at = time.monotonic()
        fleet.revoke("dev-b")
        assert wait_until(lambda: not revoked.connected, TIMEOUT), "revoked session still open"
        took = time.monotonic() - revoked_at
        assert took < 3.0, f"revocation took {took:.1f}s"
        # it keeps retrying (reconnect delay 1 s) and is refused every time
        assert not revoked.wait_connected(3.0)
        probe = Raw(fleet.broker.port, "dev-b", "dev-b", fleet.passwords["dev-b"])
        assert not probe.accepted
        probe.close()
        assert kept.connected
        beats = len(fleet.sink.heartbeats)
        assert wait_until(lambda: len(fleet.sink.heartbeats) > beats, TIMEOUT)
        assert {d for d, _ in fleet.sink.heartbeats[beats:]} == {"dev-a"}
    finally:
        revoked.stop(1.0)
        kept.stop(TIMEOUT)


def test_publish_over_max_packet_size_is_refused_and_publisher_disconnected(
    fleet: Fleet,
) -> None:
    sender = Raw(fleet.broker.port, "dev-a", "dev-a", fleet.passwords["dev-a"])
    try:
        heartbeat = topics.device_topic("dev-a", topics.HEARTBEAT)
        big = telemetry_pb2.Heartbeat(device_id="dev-a", active_variant_id="x" * 100_000)
        sender.client.publish(heartbeat, big.SerializeToString(), qos=1)
        assert sender.disconnected.wait(TIMEOUT), "oversize publisher still connected"
        small = telemetry_pb2.Heartbeat(device_id="dev-a", sequence=5).SerializeToString()
        again = Raw(fleet.broker.port, "dev-a", "dev-a", fleet.passwords["dev-a"])
        again.client.publish(heartbeat, small, qos=1).wait_for_publish(TIMEOUT)
        assert wait_until(lambda: len(fleet.sink.heartbeats) == 1, TIMEOUT)
        assert fleet.sink.heartbeats[0][1].sequence == 5  # the big one never reached the ingest
        assert fleet.ingest.stats.dropped_oversize == 0 and fleet.ingest.stats.disconnects == 0
        again.close()
    finally:
        sender.close()


def test_sockets_that_never_connect_cannot_keep_the_ingest_out(fleet: Fleet) -> None:
    """Mosquitto closes them only after 90 s (bench/bench_mqtt_idle_sockets.py measures it); until
    then max_connections bounds them, and the ingest has its own listener."""
    idle = [socket.create_connection(("127.0.0.1", fleet.broker.port)) for _ in range(40)]
    try:
        time.sleep(0.5)
        # beyond max_connections Mosquitto closes a socket at once (readable: EOF)
        closed, _, _ = select.select(idle, [], [], 0)
        assert all(s.recv(1) == b"" for s in closed)
        held = len(idle) - len(closed)
        assert held <= LIMITS.max_connections + 1  # 2.0.11 lets one more in than the limit
        second = ControllerMqttIngest(
            IngestConfig(
                url=fleet.broker.ingest_url,
                password=CONTROLLER_PASSWORD,
                client_id="second",
                connect_timeout_s=TIMEOUT,
            ),
            RecordingSink(),
        )
        fleet.ingest.stop()  # one controller session at a time: the username is the client id
        second.start()
        try:
            assert second.wait_connected(TIMEOUT), "ingest kept out by idle sockets"
            second.publish_desired("dev-a", b"still-served", timeout=TIMEOUT)
        finally:
            second.stop()
    finally:
        for s in idle:
            s.close()


def test_killed_broker_is_restarted_and_the_ingest_reconnects(fleet: Fleet) -> None:
    device = fleet.agent("dev-a")
    try:
        first_pid = fleet.broker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        assert wait_until(lambda: fleet.broker.restarts == 1, 10), "not restarted"
        assert fleet.broker.pid not in (None, first_pid)
        assert wait_until(lambda: fleet.ingest.stats.disconnects == 1, TIMEOUT)
        assert fleet.ingest.wait_connected(10), "ingest did not reconnect"
        assert device.wait_connected(10), "device did not reconnect"
        beats = len(fleet.sink.heartbeats)
        device.publish_heartbeat()
        assert wait_until(lambda: len(fleet.sink.heartbeats) > beats, TIMEOUT)
    finally:
        device.stop(TIMEOUT)


def test_stop_leaves_no_process_and_no_listener(tmp_path: Path) -> None:
    broker = MosquittoBroker(
        tmp_path / "m",
        host="127.0.0.1",
        port=0,
        controller_password=CONTROLLER_PASSWORD,
        credentials=lambda: [],
    )
    broker.start(TIMEOUT)
    pid, port = broker.pid, broker.port
    assert pid is not None and Path(f"/proc/{pid}").exists()
    broker.stop(TIMEOUT)
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    assert broker.restarts == 0
    assert not any(t.name.startswith("mosquitto") for t in threading.enumerate())


def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        broker = MosquittoBroker(
            tmp_path / "m",
            host="127.0.0.1",
            port=taken.getsockname()[1],
            controller_password=CONTROLLER_PASSWORD,
            credentials=lambda: [],
        )
        with pytest.raises(
            BrokerError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"
        ):
            broker.start(TIMEOUT)
    assert broker.pid is None


def test_mosquitto_left_by_a_killed_controller_is_ended_at_the_next_start(tmp_path: Path) -> None:
    """A controller killed with SIGKILL cannot stop its Mosquitto (own session, so it lives on,
    holding the port): the next start in the same directory ends it first."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from controller.mqtt.mosquitto import MosquittoBroker\n"
        "b = MosquittoBroker(Path(sys.argv[1]), host='127.0.0.1', port=0,"
        " controller_password='c', credentials=list)\n"
        "b.start(10)\n"
        "print(b.port, b.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    directory = tmp_path / "m"
    out = subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    ).stdout.split()
    port, orphan = int(out[0]), int(out[1])
    assert Path(f"/proc/{orphan}").exists(), "the orphan should outlive its controller"
    broker = MosquittoBroker(
        directory, host="127.0.0.1", port=port, controller_password="c", credentials=list
    )
    broker.start(TIMEOUT)
    try:
        assert broker.pid != orphan and broker.port == port
        assert wait_until(lambda: not Path(f"/proc/{orphan}").exists(), TIMEOUT)
    finally:
        broker.stop(TIMEOUT)


def test_retained_and_queued_messages_survive_a_broker_restart(tmp_path: Path) -> None:
    """Persistence in the broker's directory: the ingest's persistent session gets the reports
    queued while it was away, and devices still find their retained desired state."""
    password = generate_password()
    allowed = [("dev-a", hash_password(password))]

    def broker(port: int = 0) -> MosquittoBroker:
        b = MosquittoBroker(
            tmp_path / "m",
            host="127.0.0.1",
            port=port,
            controller_password=CONTROLLER_PASSWORD,
            credentials=lambda: allowed,
        )
        b.start(TIMEOUT)
        return b

    def ingest(url: str, sink: RecordingSink) -> ControllerMqttIngest:
        i = ControllerMqttIngest(IngestConfig(url=url, password=CONTROLLER_PASSWORD), sink)
        i.start()
        assert i.wait_connected(TIMEOUT)
        return i

    first = broker()
    port = first.port
    away = ingest(first.ingest_url, RecordingSink())
    away.publish_desired("dev-a", b"target-v2", timeout=TIMEOUT)
    away.stop()  # its session (subscriptions, queue) stays on the broker
    device = Raw(port, "dev-a", "dev-a", password)
    beat = telemetry_pb2.Heartbeat(device_id="dev-a", sequence=42).SerializeToString()
    device.client.publish(topics.device_topic("dev-a", topics.HEARTBEAT), beat, qos=1)
    device.client.publish(topics.device_topic("dev-a", topics.HEARTBEAT), beat, qos=1)
    time.sleep(0.3)
    device.close()
    first.stop(TIMEOUT)  # SIGTERM: Mosquitto writes its persistence file

    second = broker(port)
    sink = RecordingSink()
    back = ingest(second.ingest_url, sink)
    try:
        assert wait_until(lambda: len(sink.heartbeats) == 2, TIMEOUT), "queued reports lost"
        assert {h.sequence for _, h in sink.heartbeats} == {42}
        probe = Raw(port, "dev-a", "dev-a", password)
        probe.client.subscribe(topics.device_topic("dev-a", topics.DESIRED), 1)
        assert wait_until(lambda: [p for _, p in probe.received] == [b"target-v2"], TIMEOUT)
        probe.close()
    finally:
        back.stop()
        second.stop(TIMEOUT)
