"""Auth, ACL and presence flow against real brokers: a private Mosquitto and the embedded amqtt.

Every test runs against both brokers, which enforce the same rules: Mosquitto through the
generated password/ACL files, amqtt through EdgeFleet's plugins.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.broker import EmbeddedBroker
from controller.mqtt.credentials import generate_password, hash_password, write_mosquitto_auth
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2
from tests.conftest import REPO, free_port

TIMEOUT = 5.0
CONTROLLER_PASSWORD = "controller-" + generate_password()
PASSWORDS = {"dev-a": generate_password(), "dev-b": generate_password()}


class RecordingSink:
    """A telemetry sink that remembers everything and lets tests wait for a condition."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, bool, int, str]] = []
        self.heartbeats: list[tuple[str, telemetry_pb2.Heartbeat]] = []
        self._cond = threading.Condition()

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        with self._cond:
            self.statuses.append((device_id, online, unix_ms, agent_version))
            self._cond.notify_all()

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None:
        with self._cond:
            self.heartbeats.append((device_id, heartbeat))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "condition not reached in time"


class Mosquitto:
    """A private mosquitto process on a free loopback port, fed by write_mosquitto_auth."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.set_devices(PASSWORDS)
        conf = self.dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {self.dir / 'passwd'}",
            f"acl_file {self.dir / 'acl'}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto" and cannot read 0600 files
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _wait_for_port(self.port, self.proc)

    def set_devices(self, passwords: dict[str, str]) -> None:
        devices = [(d, hash_password(p)) for d, p in passwords.items()]
        write_mosquitto_auth(self.dir, CONTROLLER_PASSWORD, devices)
        if hasattr(self, "proc"):
            self.proc.send_signal(signal.SIGHUP)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


class Amqtt:
    def __init__(self) -> None:
        self.hashes: dict[str, str] = {CONTROLLER_USERNAME: hash_password(CONTROLLER_PASSWORD)}
        self.set_devices(PASSWORDS)
        self.broker = EmbeddedBroker(lambda user: self.hashes.get(user))
        self.broker.start(TIMEOUT)
        self.url = self.broker.url

    def set_devices(self, passwords: dict[str, str]) -> None:
        self.hashes = {CONTROLLER_USERNAME: self.hashes[CONTROLLER_USERNAME]} | {
            d: hash_password(p) for d, p in passwords.items()
        }

    def close(self) -> None:
        self.broker.stop(TIMEOUT)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not open its port in time")


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "mosquitto":
        if shutil.which("mosquitto") is None:
            pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
        b: Any = Mosquitto(tmp_path)
    else:
        b = Amqtt()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def ingest(broker: Any) -> Iterator[tuple[ControllerMqttIngest, RecordingSink]]:
    sink = RecordingSink()
    ing = ControllerMqttIngest(
        IngestConfig(url=broker.url, password=CONTROLLER_PASSWORD, connect_timeout_s=TIMEOUT), sink
    )
    ing.start()
    try:
        assert ing.wait_connected(TIMEOUT)
        yield ing, sink
    finally:
        ing.stop()


def agent_config(url: str, device_id: str, **kw: Any) -> AgentMqttConfig:
    return AgentMqttConfig(
        url=url,
        device_id=device_id,
        username=device_id,
        password=kw.pop("password", PASSWORDS.get(device_id, "x")),
        connect_timeout_s=TIMEOUT,
        **kw,
    )


def connack(url: str, username: str, password: str) -> mqtt.ReasonCode:
    """Connect once with a raw paho client and return the broker's CONNACK reason."""
    host, port = url.removeprefix("mqtt://").split(":")
    got: list[mqtt.ReasonCode] = []
    done = threading.Event()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)

    def on_connect(_c: Any, _u: Any, _f: Any, reason: mqtt.ReasonCode, _p: Any) -> None:
        got.append(reason)
        done.set()

    client.on_connect = on_connect
    client.connect(host, int(port), keepalive=10)
    client.loop_start()
    try:
        assert done.wait(TIMEOUT), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_status_and_heartbeat_reach_the_controller(broker: Any, ingest: Any) -> None:
    _, sink = ingest
    agent = AgentMqttClient(
        agent_config(broker.url, "dev-a", heartbeat_interval_s=0.1, agent_version="1.2.3")
    )
    agent.start()
    try:
        assert agent.wait_connected(TIMEOUT)
        sink.wait_for(lambda: ("dev-a", True) in [(s[0], s[1]) for s in sink.statuses])
        sink.wait_for(lambda: len(sink.heartbeats) >= 2)
        seqs = [hb.sequence for dev, hb in sink.heartbeats if dev == "dev-a"]
        assert seqs[:2] == [1, 2]
        assert sink.statuses[-1][3] == "1.2.3"
    finally:
        agent.stop(TIMEOUT)
    sink.wait_for(lambda: sink.statuses[-1][:2] == ("dev-a", False))


def test_last_will_marks_device_offline_when_its_process_dies(broker: Any, ingest: Any) -> None:
    _, sink = ingest
    script = (
        "import sys, time\n"
        "from agent.mqtt.client import AgentMqttClient, AgentMqttConfig\n"
        "url, dev = sys.argv[1], sys.argv[2]\n"
        "c = AgentMqttClient(AgentMqttConfig(url=url, device_id=dev, username=dev,"
        " password=sys.stdin.readline().strip(), heartbeat_interval_s=60))\n"
        "c.start()\n"
        "print('up' if c.wait_connected(10) else 'down', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, broker.url, "dev-b"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        text=True,
    )
    try:
        assert child.stdin and child.stdout
        child.stdin.write(PASSWORDS["dev-b"] + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "up"
        sink.wait_for(lambda: ("dev-b", True) in [(s[0], s[1]) for s in sink.statuses])
        killed_at = time.time()
        child.kill()  # no DISCONNECT: the broker sees the socket die and sends the will
        child.wait(TIMEOUT)
        sink.wait_for(lambda: sink.statuses[-1][:2] == ("dev-b", False))
        # the will carries unix_ms=0; the ingest stamps it with its receive time
        assert sink.statuses[-1][2] >= int(killed_at * 1000) - 1000
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(TIMEOUT)


def test_device_cannot_publish_or_read_under_another_prefix(broker: Any, ingest: Any) -> None:
    ing, sink = ingest
    host, port = broker.url.removeprefix("mqtt://").split(":")
    rogue = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="dev-a")
    rogue.username_pw_set("dev-a", PASSWORDS["dev-a"])
    received: list[str] = []
    own_desired = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.topic)
        if msg.topic == topics.device_topic("dev-a", topics.DESIRED):
            own_desired.set()

    rogue.on_message = on_message
    rogue.on_subscribe = lambda *_: subscribed.set()
    rogue.connect(host, int(port), keepalive=10)
    rogue.loop_start()
    try:
        # publishing: a forged heartbeat for dev-b must not arrive, dev-a's own marker must
        forged = telemetry_pb2.Heartbeat(device_id="dev-b", sequence=99).SerializeToString()
        hb_b = topics.device_topic("dev-b", topics.HEARTBEAT)
        rogue.publish(hb_b, forged, qos=1).wait_for_publish(TIMEOUT)
        marker = telemetry_pb2.Heartbeat(device_id="dev-a", sequence=7).SerializeToString()
        rogue.publish(topics.device_topic("dev-a", topics.HEARTBEAT), marker, qos=1)
        sink.wait_for(lambda: any(dev == "dev-a" for dev, _ in sink.heartbeats))
        assert [dev for dev, _ in sink.heartbeats] == ["dev-a"]

        # reading: Mosquitto grants a forbidden SUBSCRIBE but never delivers, amqtt refuses it;
        # either way only dev-a's own desired state may reach dev-a
        rogue.subscribe(
            [
                (topics.device_topic("dev-b", topics.DESIRED), 1),
                (topics.subscription(topics.STATUS), 1),
                (topics.device_topic("dev-a", topics.DESIRED), 1),
            ]
        )
        assert subscribed.wait(TIMEOUT)
        ing.publish_desired("dev-b", b"for-b", timeout=TIMEOUT)
        ing.publish_desired("dev-a", b"for-a", timeout=TIMEOUT)
        assert own_desired.wait(TIMEOUT)
        assert received == [topics.device_topic("dev-a", topics.DESIRED)]
    finally:
        rogue.disconnect()
        rogue.loop_stop()


def test_retained_desired_state_reaches_only_its_device(broker: Any, ingest: Any) -> None:
    ing, _ = ingest
    ing.publish_desired("dev-a", b"variant=v2", timeout=TIMEOUT)  # before dev-a is even online
    got: dict[str, list[bytes]] = {"dev-a": [], "dev-b": []}
    cond = threading.Condition()

    def recorder(dev: str) -> Callable[[bytes], None]:
        def on_desired(payload: bytes) -> None:
            with cond:
                got[dev].append(payload)
                cond.notify_all()

        return on_desired

    agents = []
    for dev in ("dev-a", "dev-b"):
        agent = AgentMqttClient(agent_config(broker.url, dev, heartbeat_interval_s=60))
        agent.on_desired(recorder(dev))
        agent.start()
        agents.append(agent)
    try:
        with cond:
            assert cond.wait_for(lambda: got["dev-a"] == [b"variant=v2"], TIMEOUT)
        ing.publish_desired("dev-b", b"variant=v3", timeout=TIMEOUT)
        with cond:
            assert cond.wait_for(lambda: got["dev-b"] == [b"variant=v3"], TIMEOUT)
        assert got == {"dev-a": [b"variant=v2"], "dev-b": [b"variant=v3"]}
    finally:
        for agent in agents:
            agent.stop(TIMEOUT)


def test_wrong_password_and_unknown_user_are_refused(broker: Any) -> None:
    assert not connack(broker.url, "dev-a", PASSWORDS["dev-a"]).is_failure
    assert connack(broker.url, "dev-a", PASSWORDS["dev-b"]).is_failure
    assert connack(broker.url, "dev-zzz", "anything").is_failure
    assert connack(broker.url, CONTROLLER_USERNAME, "wrong").is_failure


def test_revoked_device_is_refused_after_reload(broker: Any) -> None:
    assert not connack(broker.url, "dev-b", PASSWORDS["dev-b"]).is_failure
    broker.set_devices({"dev-a": PASSWORDS["dev-a"]})  # dev-b revoked: simply absent
    deadline = time.monotonic() + TIMEOUT
    while not connack(broker.url, "dev-b", PASSWORDS["dev-b"]).is_failure:
        assert time.monotonic() < deadline, "revoked device still accepted"
        time.sleep(0.05)
    assert not connack(broker.url, "dev-a", PASSWORDS["dev-a"]).is_failure
