"""A real Mosquitto stopped and restarted under a running fleet: no telemetry report is lost.

The agent spools reports on disk until the broker acknowledges them; the controller's ingest
holds a persistent session, so the broker (with `persistence true`) queues reports for it
until the ingest has reconnected and resubscribed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from controller.app import Controller
from controller.mqtt.credentials import hash_password, write_mosquitto_auth
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from controller.services.telemetry_math import ReportSample
from edgefleet import topics
from edgefleet.v1 import report_pb2
from tests.conftest import free_port, wait_until
from tests.fleet import Admin, start_controller
from tests.integration.test_agent_runtime import (
    DIGITS,
    HAVE_EDGE,
    RunningAgent,
    enroll_agent,
    variant,  # noqa: F401 (fixture)
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = [
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed"),
    pytest.mark.skipif(not HAVE_EDGE, reason=f"digits models not in {DIGITS}"),
]


class PersistentMosquitto:
    """A private Mosquitto on a fixed port of ours that keeps sessions across restarts."""

    def __init__(self, workdir: Path, auth_dir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        (workdir / "db").mkdir()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {auth_dir / 'passwd'}",
            f"acl_file {auth_dir / 'acl'}",
            "persistence true",
            f"persistence_location {workdir / 'db'}/",
            "log_dest stderr",
            "log_type error",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(listening, 10), "mosquitto did not start"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves its persistence database
            self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Controller, Admin, PersistentMosquitto]]:
    data_dir = tmp_path / "controller"
    data_dir.mkdir()
    (data_dir / "mqtt.secret").write_text("controller-secret")
    write_mosquitto_auth(data_dir / "mosquitto", "controller-secret", [])
    broker = PersistentMosquitto(tmp_path, data_dir / "mosquitto")
    controller = start_controller(
        data_dir,
        mqtt=f"mqtt://127.0.0.1:{broker.port}",
        # the pid changes at every restart: reload whichever mosquitto reads our config
        mqtt_reload_command=f"pkill -HUP -f {broker.conf}",
    )
    admin = Admin(controller)
    yield controller, admin, broker
    admin.close()
    controller.stop()
    broker.stop()


def _broker_outage(
    fleet: tuple[Controller, Admin, PersistentMosquitto],
    model_dir: Path,
    tmp_path: Path,
    outage_s: float,
) -> None:
    controller, admin, broker = fleet
    assert controller.ingest.wait_connected(10)
    agent = RunningAgent(
        enroll_agent(admin, tmp_path, "cam-restart"),
        model_dir=model_dir,
        source=str(DIGITS / "test_corrupted.npz"),
        loop=True,
        fps=50,
        telemetry_interval_s=0.2,
        heartbeat_interval_s=1.0,
    )
    store = controller.telemetry
    spool = agent.daemon.config.data_dir / "telemetry-spool"
    try:
        assert wait_until(lambda: len(store.sequences(agent.device_id)) >= 3, 20)
        broker.stop()
        time.sleep(outage_s)
        assert any(spool.glob("*.report")), "reports should wait on disk while the broker is down"
        broker.start()

        def caught_up() -> bool:
            return len(store.sequences(agent.device_id)) > 10 and not any(spool.glob("*.report"))

        assert wait_until(caught_up, 60), "spooled reports were not delivered"
        time.sleep(1.0)  # reports still queued for the ingest by the broker
        seqs = store.sequences(agent.device_id)
        assert seqs == list(range(1, len(seqs) + 1)), "a report was lost or reordered"
    finally:
        agent.stop()


def test_broker_restart_loses_no_report(fleet, variant: Path, tmp_path: Path) -> None:  # noqa: F811
    _broker_outage(fleet, variant, tmp_path, outage_s=3.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_broker_down_30s_loses_no_report(fleet, variant: Path, tmp_path: Path) -> None:  # noqa: F811
    _broker_outage(fleet, variant, tmp_path, outage_s=30.0)


class _Reports:
    def __init__(self) -> None:
        self.sequences: list[int] = []

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        pass

    def device_heartbeat(self, device_id: str, heartbeat: object) -> None:
        pass

    def device_telemetry(self, device_id: str, sample: ReportSample) -> None:
        self.sequences.append(sample.sequence)


def test_reports_sent_while_the_ingest_is_away_reach_it(tmp_path: Path) -> None:
    """The order the fleet test cannot force: a device is back (and flushes its spool) before
    the controller's ingest is. The broker queues the reports for the ingest's session, across
    a broker restart too."""
    auth = tmp_path / "auth"
    device, password = "dev-0123456789ab", "device-secret"
    write_mosquitto_auth(auth, "controller-secret", [(device, hash_password(password))])
    broker = PersistentMosquitto(tmp_path, auth)
    url = f"mqtt://127.0.0.1:{broker.port}"
    config = IngestConfig(url=url, password="controller-secret")
    first, sink = ControllerMqttIngest(config, _Reports()), _Reports()
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=device)
    try:
        first.start()
        assert first.wait_connected(10)
        first.stop()  # the controller goes away (its session stays with the broker)
        broker.stop()
        broker.start()  # and the broker restarts in between
        publisher.username_pw_set(device, password)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        topic = topics.device_topic(device, topics.TELEMETRY)
        for sequence in range(1, 6):
            report = report_pb2.TelemetryReport(
                device_id=device, sequence=sequence, frames=1, interval_end_unix_ms=sequence
            )
            publisher.publish(topic, report.SerializeToString(), qos=1).wait_for_publish(5)
        second = ControllerMqttIngest(config, sink)
        second.start()
        try:
            assert wait_until(lambda: len(sink.sequences) == 5, 10), sink.sequences
            assert sink.sequences == [1, 2, 3, 4, 5]
        finally:
            second.stop()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        broker.stop()
