"""Agent and ingest over mqtts:// to a private Mosquitto TLS listener with a test CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.mqtt.client import AgentMqttClient, AgentMqttConfig
from controller.mqtt.credentials import hash_password, write_mosquitto_auth
from controller.mqtt.ingest import ControllerMqttIngest, IngestConfig
from edgefleet.v1 import telemetry_pb2
from tests.conftest import free_port

TIMEOUT = 5.0

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None, reason="mosquitto binary not installed"
)


def _write_pki(directory: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    _write_pki(tmp_path)
    write_mosquitto_auth(tmp_path, "ctl-pw", [("dev-tls", hash_password("dev-pw"))])
    port = free_port()
    lines = [
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
        "persistence false",
        f"listener {port} 127.0.0.1",
        f"cafile {tmp_path / 'ca.crt'}",
        f"certfile {tmp_path / 'server.crt'}",
        f"keyfile {tmp_path / 'server.key'}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    (tmp_path / "tls.conf").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "tls.conf")], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, "mosquitto exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not open its port"
                time.sleep(0.05)
        yield f"mqtts://127.0.0.1:{port}", tmp_path / "ca.crt"
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


class StatusSink:
    def __init__(self) -> None:
        self.online = threading.Event()

    def device_status(self, device_id: str, online: bool, unix_ms: int, agent_version: str) -> None:
        if device_id == "dev-tls" and online:
            self.online.set()

    def device_heartbeat(self, device_id: str, heartbeat: telemetry_pb2.Heartbeat) -> None:
        pass


def test_agent_status_reaches_ingest_over_tls(tls_broker: tuple[str, Path]) -> None:
    url, ca_file = tls_broker
    sink = StatusSink()
    ingest = ControllerMqttIngest(
        IngestConfig(url=url, password="ctl-pw", ca_file=str(ca_file), connect_timeout_s=TIMEOUT),
        sink,
    )
    agent = AgentMqttClient(
        AgentMqttConfig(
            url=url,
            device_id="dev-tls",
            username="dev-tls",
            password="dev-pw",
            ca_file=str(ca_file),
            connect_timeout_s=TIMEOUT,
        )
    )
    ingest.start()
    try:
        assert ingest.wait_connected(TIMEOUT)
        agent.start()
        assert agent.wait_connected(TIMEOUT)
        assert sink.online.wait(TIMEOUT)
    finally:
        agent.stop(TIMEOUT)
        ingest.stop()


def test_agent_refuses_a_broker_its_ca_did_not_sign(
    tls_broker: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    url, _ = tls_broker
    other = tmp_path_factory.mktemp("other-ca")
    _write_pki(other)
    agent = AgentMqttClient(
        AgentMqttConfig(
            url=url,
            device_id="dev-tls",
            username="dev-tls",
            password="dev-pw",
            ca_file=str(other / "ca.crt"),
            connect_timeout_s=TIMEOUT,
            reconnect_min_delay_s=1,
            reconnect_max_delay_s=1,
        )
    )
    agent.start()
    try:
        assert not agent.wait_connected(1.5)  # handshake fails on every attempt
    finally:
        agent.stop(TIMEOUT)
