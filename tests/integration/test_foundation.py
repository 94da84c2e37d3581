"""The foundation through real servers: controller (gRPC over TLS/mTLS, embedded MQTT),
registry on SQLite and PostgreSQL, agents that enroll and heartbeat for real."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent.controller_client import ControllerClient, DeviceRefused, device_channel
from agent.enroll import EnrollmentRefused, enroll
from agent.errors import ControllerUnreachable
from agent.hardware import detect
from agent.identity import Credentials, Identity
from controller.app import Controller
from edgefleet.enrollment import EnrollmentToken
from edgefleet.hardware import HardwareFacts
from edgefleet.v1 import admin_pb2, device_pb2, device_pb2_grpc
from tests.conftest import free_port, wait_until
from tests.fleet import Admin, postgres_available, postgres_database, start_controller, status_code

ARM_A76 = HardwareFacts(
    arch="aarch64", cpu_flags=("asimd", "asimddp", "neon"), cores=4, runtimes=("litert",)
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def controller(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Controller]:
    if request.param == "postgresql":
        if not postgres_available():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        with postgres_database() as url:
            ctl = start_controller(tmp_path / "controller", db=url)
            yield ctl
            ctl.stop()
    else:
        ctl = start_controller(tmp_path / "controller")
        yield ctl
        ctl.stop()


@pytest.fixture
def admin(controller: Controller) -> Iterator[Admin]:
    a = Admin(controller)
    yield a
    a.close()


def _enroll(
    controller: Controller,
    admin: Admin,
    tmp_path: Path,
    name: str,
    facts: HardwareFacts | None = None,
    **labels: str,
) -> Identity:
    token = admin.register(name, **labels)
    return enroll(tmp_path / name, admin.address, token, facts or detect(), attempts=1)


def _client(data_dir: Path) -> ControllerClient:
    identity = Identity.load(data_dir)
    return ControllerClient(
        device_channel(identity.controller, Credentials.load(data_dir), 1 << 20)
    )


def test_enroll_heartbeat_and_revoke(controller: Controller, admin: Admin, tmp_path: Path) -> None:
    identity = _enroll(controller, admin, tmp_path, "cam-1", site="lab")
    assert identity.profile in {
        "x86-64-vnni",
        "x86-64-avx2",
        "x86-64-vnni-openvino",  # the agent reports OpenVINO when the openvino extra is in
        "x86-64-bf16-openvino",
        "x86-64-avx2-openvino",
        "generic-cpu",
        "arm64-dotprod",
        "arm64-a72",
    }
    assert oct(os.stat(tmp_path / "cam-1" / "device.key").st_mode & 0o777) == "0o600"
    client = _client(tmp_path / "cam-1")
    reply = client.heartbeat("test")
    assert reply.device_id == identity.device_id
    (listed,) = admin.devices()
    assert listed.online and listed.state == "enrolled" and listed.labels["site"] == "lab"
    assert listed.facts.cores == (os.cpu_count() or 0)
    admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="cam-1"), timeout=10)
    with pytest.raises(DeviceRefused, match="revoked"):
        client.heartbeat("test")
    (listed,) = admin.devices()
    assert listed.state == "revoked" and not listed.online
    client.close()


def test_auto_profile_resolves_from_facts(
    controller: Controller, admin: Admin, tmp_path: Path
) -> None:
    identity = _enroll(controller, admin, tmp_path, "pi-5", facts=ARM_A76)
    assert identity.profile == "arm64-dotprod"
    fixed_token = admin.register("npu-1", profile="int8-npu")
    assert (
        enroll(tmp_path / "npu-1", admin.address, fixed_token, ARM_A76, attempts=1).profile
        == "int8-npu"
    )


def test_device_calls_need_a_certificate(controller: Controller, admin: Admin) -> None:
    ca = (controller.config.data_dir / "pki" / "ca.pem").read_bytes()
    for port in (controller.grpc_port, controller.device_port):
        channel = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca))
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Heartbeat(device_pb2.HeartbeatRequest(), timeout=5)
        # The TLS port answers UNAUTHENTICATED; the mTLS port refuses the handshake.
        assert status_code(err.value) in {
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.UNAVAILABLE,
        }
        channel.close()


def _snapshot(admin: Admin) -> list[tuple[str, str, bool, str]]:
    return [(d.name, d.state, d.online, d.cert_fingerprint) for d in admin.devices()]


def test_bad_tokens_are_refused_and_change_nothing(
    controller: Controller, admin: Admin, tmp_path: Path
) -> None:
    token = admin.register("cam-1")
    parsed = EnrollmentToken.parse(token)
    before = _snapshot(admin)
    unknown = str(EnrollmentToken("deadbeef", parsed.secret, parsed.ca_pin))
    wrong_secret = str(EnrollmentToken(parsed.token_id, "x" * 43, parsed.ca_pin))
    for bad, reason in ((unknown, "unknown"), (wrong_secret, "unknown")):
        with pytest.raises(EnrollmentRefused, match=reason):
            enroll(tmp_path / "bad", admin.address, bad, detect(), attempts=1)
        assert not (tmp_path / "bad" / "device.key").exists()
    assert _snapshot(admin) == before
    enroll(tmp_path / "good", admin.address, token, detect(), attempts=1)
    after_enroll = _snapshot(admin)
    with pytest.raises(EnrollmentRefused, match="already used"):
        enroll(tmp_path / "again", admin.address, token, detect(), attempts=1)
    assert _snapshot(admin) == after_enroll


def test_expired_token(controller: Controller, admin: Admin, tmp_path: Path) -> None:
    response = admin.stub.RegisterDevice(
        admin_pb2.RegisterDeviceRequest(name="cam-x", profile="auto", token_ttl_seconds=1),
        timeout=10,
    )
    time.sleep(1.1)
    before = _snapshot(admin)
    with pytest.raises(EnrollmentRefused, match="expired"):
        enroll(tmp_path / "x", admin.address, response.enrollment_token, detect(), attempts=1)
    assert _snapshot(admin) == before


def test_malformed_csr_is_invalid_argument(controller: Controller, admin: Admin) -> None:
    token = EnrollmentToken.parse(admin.register("cam-1"))
    ca = (controller.config.data_dir / "pki" / "ca.pem").read_bytes()
    channel = grpc.secure_channel(admin.address, grpc.ssl_channel_credentials(ca))
    stub = device_pb2_grpc.DeviceServiceStub(channel)
    before = _snapshot(admin)
    with pytest.raises(grpc.RpcError) as err:
        stub.Enroll(
            device_pb2.EnrollRequest(token=token.credential, csr_pem="not a csr"), timeout=5
        )
    assert status_code(err.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert _snapshot(admin) == before
    channel.close()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            admin_pb2.RegisterDeviceRequest(name="cam-1", profile="no-such-profile"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            admin_pb2.RegisterDeviceRequest(name="cam 1", profile="auto"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            admin_pb2.RegisterDeviceRequest(name="cam-0", profile="auto", labels={"bad key": "v"}),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_register_rejects_bad_input(
    admin: Admin, request_: admin_pb2.RegisterDeviceRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        admin.stub.RegisterDevice(request_, timeout=10)
    assert status_code(err.value) == code
    assert admin.devices() == []


def test_duplicate_name_and_unknown_device(admin: Admin) -> None:
    admin.register("cam-1")
    before = _snapshot(admin)
    with pytest.raises(grpc.RpcError) as err:
        admin.register("cam-1")
    assert status_code(err.value) == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        admin.stub.RevokeDevice(admin_pb2.RevokeDeviceRequest(name_or_id="nope"), timeout=10)
    assert status_code(err.value) == grpc.StatusCode.NOT_FOUND
    assert _snapshot(admin) == before


def test_wrong_operator_token(controller: Controller) -> None:
    intruder = Admin(controller, token="not-the-token")
    with pytest.raises(grpc.RpcError) as err:
        intruder.register("cam-1")
    assert status_code(err.value) == grpc.StatusCode.UNAUTHENTICATED
    intruder.close()
    assert Admin(controller).devices() == []


def test_labels_and_selector(controller: Controller, admin: Admin) -> None:
    admin.register("cam-1", site="lab")
    admin.register("cam-2", site="depot")
    admin.stub.LabelDevice(
        admin_pb2.LabelDeviceRequest(name_or_id="cam-2", set={"tier": "prod"}, remove=["site"]),
        timeout=10,
    )
    found = admin.stub.ListDevices(
        admin_pb2.ListDevicesRequest(label_selector={"tier": "prod"}), timeout=10
    ).devices
    assert [d.name for d in found] == ["cam-2"] and "site" not in found[0].labels


def test_agent_reports_unreachable_controller(tmp_path: Path) -> None:
    token = str(EnrollmentToken("abcdef12", "s" * 43, "0" * 64))
    with pytest.raises(ControllerUnreachable, match="unreachable"):
        enroll(tmp_path / "a", f"127.0.0.1:{free_port()}", token, detect(), attempts=2)
    assert not (tmp_path / "a" / "identity.json").exists()


def test_mqtt_presence_and_last_will(controller: Controller, admin: Admin, tmp_path: Path) -> None:
    from agent.mqtt.client import AgentMqttClient, AgentMqttConfig

    identity = _enroll(controller, admin, tmp_path, "cam-1")
    mqtt = AgentMqttClient(
        AgentMqttConfig(
            url=identity.mqtt_url,
            device_id=identity.device_id,
            username=identity.mqtt_username,
            password=identity.mqtt_password,
            heartbeat_interval_s=0.5,
        )
    )
    mqtt.start()
    try:
        assert mqtt.wait_connected(10)
        assert wait_until(lambda: admin.devices()[0].online, 10)
    finally:
        mqtt.stop()
    assert wait_until(lambda: not admin.devices()[0].online, 10)


def test_restart_keeps_ca_token_and_devices(tmp_path: Path) -> None:
    first = start_controller(tmp_path / "c")
    pin, token = first.ca.pin, first.operator_token
    Admin(first).register("cam-1")
    first.stop()
    second = start_controller(tmp_path / "c")
    try:
        assert (second.ca.pin, second.operator_token) == (pin, token)
        assert [d.name for d in Admin(second).devices()] == ["cam-1"]
        assert oct(os.stat(tmp_path / "c" / "pki" / "ca.key").st_mode & 0o777) == "0o600"
        assert oct(os.stat(tmp_path / "c" / "operator.token").st_mode & 0o777) == "0o600"
    finally:
        second.stop()
