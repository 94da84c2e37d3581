"""Test and bench helpers: controller replicas as real processes (`edgefleet controller serve`)
on one PostgreSQL and one external Mosquitto, laid out as deploy/README.md "Running several
replicas" says: each replica has a data directory of its own; the CA and the secrets come from
one secrets directory (``root/secrets``), the artifact store is one directory, and the TUF
repository and the broker's passwd/acl files are one shared volume each (symlinks here).
"""

from __future__ import annotations

import os
import secrets
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
from controller.pki import CertificateAuthority, write_private
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


def make_secrets(root: Path) -> Path:
    """``root/secrets``: the CA and the controller's secrets, as an operator mounts them."""
    secrets_dir = root / "secrets"
    CertificateAuthority(secrets_dir / "pki")
    for name in ("operator.token", "http.secret"):
        write_private(secrets_dir / name, secrets.token_urlsafe(32).encode())
    write_private(secrets_dir / "mqtt.secret", b"controller-secret")
    return secrets_dir


@contextmanager
def mosquitto_on(auth: Path, conf_dir: Path, *extra: str) -> Iterator[SharedBroker]:
    """A Mosquitto on loopback reading the passwd/acl files in ``auth`` (in memory only: a
    broker restart is not what these tests are about); ``extra`` config lines."""
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {auth / 'passwd'}",
        f"acl_file {auth / 'acl'}",
        "persistence false",
        *extra,
        "log_dest stderr",
        "log_type error",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = conf_dir / "mosquitto.conf"
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


@contextmanager
def shared_mosquitto(root: Path) -> Iterator[SharedBroker]:
    """The secrets (``make_secrets``) and a Mosquitto reading the passwd/acl files every
    replica writes into the shared ``root/shared/mosquitto``."""
    root.mkdir(parents=True, exist_ok=True)
    make_secrets(root)
    auth = root / "shared" / "mosquitto"
    write_mosquitto_auth(auth, "controller-secret", [])
    with mosquitto_on(auth, root, "max_inflight_messages 100") as broker:
        yield broker


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
    root: Path,
    db_url: str,
    broker: SharedBroker,
    replica_id: str,
    *,
    lease_s: float = 3.0,
    tick_s: float = 0.3,
    ports: tuple[int, int] | None = None,
    ready_timeout_s: float = 60.0,
) -> Replica:
    """``edgefleet controller serve`` as replica ``replica_id`` (data directory
    ``root/replica-<id>``); returns once its operator and device ports answer."""
    grpc_port, device_port = ports or (free_port(), free_port())
    data_dir = root / f"replica-{replica_id}"
    data_dir.mkdir(parents=True, exist_ok=True)
    for shared in ("tuf", "mosquitto"):  # one shared volume each, mounted in every replica
        (root / "shared" / shared).mkdir(parents=True, exist_ok=True)
        if not (data_dir / shared).exists():
            (data_dir / shared).symlink_to(root / "shared" / shared, target_is_directory=True)
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
        "EDGEFLEET_SECRETS_DIR": str(root / "secrets"),
        "EDGEFLEET_STORE": str(root / "shared" / "artifacts"),
    }
    log_file = root / f"replica-{replica_id}.log"
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
    """The operator API of one replica (the token and CA of the shared secrets)."""

    def __init__(self, root: Path, replica: Replica) -> None:
        token = (root / "secrets" / "operator.token").read_text().strip()
        ca = (root / "secrets" / "pki" / "ca.pem").read_bytes()
        self.address = replica.address
        self.conn = Connection(self.address, token, ca, 10.0)
        self.channel = open_channel(self.conn)
        self.stub = admin_pb2_grpc.DeviceAdminServiceStub(self.channel)
