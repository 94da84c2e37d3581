"""Test helpers: a real controller on loopback ports and real enrolled agents."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from controller.app import Controller, build_controller
from controller.cli.client import Connection, open_channel
from controller.config import ControllerConfig
from edgefleet.v1 import admin_pb2, admin_pb2_grpc

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database on the local server, dropped afterwards."""
    import psycopg

    name = f"edgefleet_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_controller(data_dir: Path, db: str = "", **overrides: object) -> Controller:
    config = ControllerConfig(
        data_dir=data_dir,
        db=db,
        grpc_host="127.0.0.1",
        grpc_port=0,
        device_port=0,
        mqtt_port=0,
        shutdown_grace_s=2.0,
        **{"http_port": 0, **overrides},  # type: ignore[arg-type]
    )
    return build_controller(config)


class Admin:
    """The operator API, as the CLI reaches it (TLS + bearer token)."""

    def __init__(self, controller: Controller, token: str | None = None) -> None:
        ca = (controller.config.data_dir / "pki" / "ca.pem").read_bytes()
        self.address = f"127.0.0.1:{controller.grpc_port}"
        self.conn = Connection(self.address, token or controller.operator_token, ca, 10.0)
        self.channel = open_channel(self.conn)
        self.stub = admin_pb2_grpc.DeviceAdminServiceStub(self.channel)

    def register(self, name: str, profile: str = "auto", **labels: str) -> str:
        response = self.stub.RegisterDevice(
            admin_pb2.RegisterDeviceRequest(name=name, profile=profile, labels=labels), timeout=10
        )
        return str(response.enrollment_token)

    def devices(self) -> list[admin_pb2.ListDevicesResponse]:
        return list(self.stub.ListDevices(admin_pb2.ListDevicesRequest(), timeout=10).devices)

    def close(self) -> None:
        self.channel.close()


@contextmanager
def controller_with_admin(data_dir: Path) -> Iterator[tuple[Controller, Admin]]:
    """``start_controller(data_dir)`` and an ``Admin`` on it; on exit the admin connection and
    then the controller are closed."""
    controller = start_controller(data_dir)
    admin = Admin(controller)
    try:
        yield controller, admin
    finally:
        admin.close()
        controller.stop()


def status_code(exc: BaseException) -> grpc.StatusCode:
    assert isinstance(exc, grpc.RpcError)
    return exc.code()


def edgefleet_cli(
    data_dir: Path, *args: str, check: bool = True, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the operator CLI as a user would, against the controller in ``data_dir``."""
    binary = Path(sys.executable).parent / "edgefleet"
    result = subprocess.run(
        [str(binary), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"edgefleet {args} failed: {result.stderr}")
    return result
