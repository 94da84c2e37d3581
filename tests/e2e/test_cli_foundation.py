"""The 'done when' of the foundation, as a new user would do it: real processes, real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until
from tests.fleet import edgefleet_cli, postgres_available, postgres_database

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    data_dir = tmp_path / "controller"
    grpc_port, device_port, mqtt_port = free_port(), free_port(), free_port()
    args = [
        str(BIN / "edgefleet"),
        "controller",
        "serve",
        "--data-dir",
        str(data_dir),
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--device-port",
        str(device_port),
        "--http-port",
        "0",
        "--mqtt-port",
        str(mqtt_port),
    ]

    def run(extra: list[str]) -> Iterator[tuple[Path, int]]:
        proc = subprocess.Popen([*args, *extra], stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: (data_dir / "client.toml").exists(), 30), (
                "controller did not start"
            )
            yield data_dir, grpc_port
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""

    if request.param == "postgresql":
        if not postgres_available():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        with postgres_database() as url:
            yield from run(["--db", url])
    else:
        yield from run([])


def test_register_enroll_run_list_revoke(served: tuple[Path, int], tmp_path: Path) -> None:
    data_dir, port = served
    out = edgefleet_cli(
        data_dir,
        "device",
        "register",
        "cam-1",
        "--profile",
        "auto",
        "--label",
        "site=lab",
        "--format",
        "json",
    )
    token = json.loads(out.stdout)["enrollment_token"]
    agent_dir = tmp_path / "agent"
    enrolled = subprocess.run(
        [
            str(BIN / "edgefleet-agent"),
            "enroll",
            "--controller",
            f"127.0.0.1:{port}",
            "--token",
            token,
            "--data-dir",
            str(agent_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent = subprocess.Popen(
        [
            str(BIN / "edgefleet-agent"),
            "run",
            "--data-dir",
            str(agent_dir),
            "--heartbeat-interval",
            "0.5",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def online() -> dict | None:
            devices = json.loads(
                edgefleet_cli(data_dir, "device", "list", "--format", "json").stdout
            )
            return devices[0] if devices and devices[0]["online"] else None

        # the agent process starts (imports ONNX Runtime) and sends its first heartbeat; the
        # bound leaves room for a machine busy with other tests
        assert wait_until(online, 15), "cam-1 not online within 15 s"
        device = online()
        assert device is not None
        assert device["name"] == "cam-1" and device["labels"] == {"site": "lab"}
        assert device["profile"] and device["requested_profile"] == "auto"
        assert device["facts"]["cores"] == os.cpu_count()
        assert "onnxruntime" in device["facts"]["runtimes"]

        edgefleet_cli(data_dir, "device", "revoke", "cam-1")
        assert agent.wait(timeout=10) == 3, "agent should stop when refused"
        assert agent.stderr is not None and "refused" in agent.stderr.read()
        devices = json.loads(edgefleet_cli(data_dir, "device", "list", "--format", "json").stdout)
        assert devices[0]["state"] == "revoked" and devices[0]["online"] is False
    finally:
        if agent.poll() is None:
            agent.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device", "register", "cam-9", "--profile", "quantum-npu"], "unknown hardware profile"),
        (["device", "show", "nope"], "no device named"),
        (["device", "register", "cam-9", "--label", "novalue"], "key=value"),
    ],
)
def test_cli_errors_are_one_line(served: tuple[Path, int], args: list[str], message: str) -> None:
    data_dir, _ = served
    result = edgefleet_cli(data_dir, *args, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(edgefleet_cli(data_dir, "device", "list", "--format", "json").stdout) == []


def test_cli_duplicate_and_wrong_token(served: tuple[Path, int]) -> None:
    data_dir, _ = served
    edgefleet_cli(data_dir, "device", "register", "cam-1")
    dup = edgefleet_cli(data_dir, "device", "register", "cam-1", check=False)
    assert dup.returncode != 0 and "exists already" in dup.stderr
    bad = edgefleet_cli(data_dir, "--token", "wrong", "device", "list", check=False)
    assert bad.returncode == 3 and "operator token" in bad.stderr


def test_cli_without_controller_says_so(tmp_path: Path) -> None:
    result = edgefleet_cli(
        tmp_path,
        "--controller",
        f"127.0.0.1:{free_port()}",
        "--token",
        "t",
        "--ca-file",
        str(tmp_path / "missing.pem"),
        "device",
        "list",
        check=False,
    )
    assert result.returncode != 0 and result.stderr.startswith("error:")


def test_agent_enroll_bad_token_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "edgefleet-agent"),
            "enroll",
            "--controller",
            "127.0.0.1:1",
            "--token",
            "garbage",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "malformed enrollment token" in result.stderr
    assert "Traceback" not in result.stderr
