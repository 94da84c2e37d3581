"""Test and bench helpers: controller replicas as real processes (`edgefleet controller serve`)
on one PostgreSQL and one external Mosquitto, sharing one data directory (the CA, the TUF
repository and the artifact store: what a shared volume and a mounted secret give replicas).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from controller.cli.client import Connection, open_channel
from controller.mqtt.credentials import write_mosquitto_auth
from controller.store.db import normalize_url
from edgefleet.v1 import admin_pb2_grpc
from tests.conftest import free_port
from tests.fleet import Admin

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLI = Path(sys.executable).parent / "edgefleet"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class SharedBroker:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@contextmanager
def shared_mosquitto(data_dir: Path) -> Iterator[SharedBroker]:
    """A Mosquitto reading the passwd/acl files the replicas keep in ``data_dir/mosquitto``
    (in memory only: a broker restart is not what these tests are about)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "mqtt.secret").write_text("controller-secret")
    auth = data_dir / "mosquitto"
    write_mosquitto_auth(auth, "controller-secret", [])
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {auth / 'passwd'}",
        f"acl_file {auth / 'acl'}",
        "persistence false",
        "max_inflight_messages 100",
        "log_dest stderr",
        "log_type error",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = data_dir.parent / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield SharedBroker(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@dataclass
class Replica:
    replica_id: str
    grpc_port: int
    device_port: int
    proc: subprocess.Popen[bytes]
    log_file: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def kill(self) -> None:
        """SIGKILL: no lease release, no session cleanup, nothing flushed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_replica(
    data_dir: Path,
    db_url: str,
    broker: SharedBroker,
    replica_id: str,
    *,
    lease_s: float = 3.0,
    tick_s: float = 0.3,
    ports: tuple[int, int] | None = None,
    ready_timeout_s: float = 60.0,
) -> Replica:
    """``edgefleet controller serve`` as replica ``replica_id``; returns once its operator
    port answers."""
    grpc_port, device_port = ports or (free_port(), free_port())
    env = {
        **os.environ,
        "EDGEFLEET_DB": db_url,
        "EDGEFLEET_MQTT": broker.url,
        "EDGEFLEET_MQTT_RELOAD_COMMAND": f"kill -HUP {broker.proc.pid}",
        "EDGEFLEET_GRPC_HOST": "127.0.0.1",
        "EDGEFLEET_GRPC_PORT": str(grpc_port),
        "EDGEFLEET_DEVICE_PORT": str(device_port),
        "EDGEFLEET_HTTP_PORT": "0",
        "EDGEFLEET_REPLICA_ID": replica_id,
        "EDGEFLEET_LEADER_LEASE_S": str(lease_s),
        "EDGEFLEET_MQTT_SHARED_INGEST": "true",
        "EDGEFLEET_ROLLOUT_TICK_S": str(tick_s),
        "EDGEFLEET_SHUTDOWN_GRACE_S": "2",
        "EDGEFLEET_AUDIT_PLAN_INTERVAL_S": "600",
    }
    log_file = data_dir.parent / f"replica-{replica_id}.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [str(CLI), "controller", "serve", "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(replica_id, grpc_port, device_port, proc, log_file)
    deadline = time.monotonic() + ready_timeout_s
    while not (listening(grpc_port) and listening(device_port)):
        if proc.poll() is not None or time.monotonic() > deadline:
            replica.stop()
            raise RuntimeError(
                f"replica {replica_id} did not start: {log_file.read_text()[-3000:]}"
            )
        time.sleep(0.1)
    return replica


def lease_holder(db_url: str) -> tuple[str, int] | None:
    """(replica id, epoch) of the lease while it is valid, by the database clock."""
    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT holder, epoch FROM controller_leases WHERE name = 'singleton' AND "
                    "expires_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
                )
            ).first()
    finally:
        engine.dispose()
    return None if row is None else (str(row[0]).split("/", 1)[0], int(row[1]))


def wait_leader(db_url: str, replica_id: str, timeout_s: float) -> float:
    """Seconds until ``replica_id`` holds the lease (TimeoutError past ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        held = lease_holder(db_url)
        if held is not None and held[0] == replica_id:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"replica {replica_id} did not lead within {timeout_s} s")


class ReplicaAdmin(Admin):
    """The operator API of one replica (the shared data directory's token and CA)."""

    def __init__(self, data_dir: Path, replica: Replica) -> None:
        token = (data_dir / "operator.token").read_text().strip()
        ca = (data_dir / "pki" / "ca.pem").read_bytes()
        self.address = replica.address
        self.conn = Connection(self.address, token, ca, 10.0)
        self.channel = open_channel(self.conn)
        self.stub = admin_pb2_grpc.DeviceAdminServiceStub(self.channel)
