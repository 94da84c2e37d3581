"""The 'done when' of the agent runtime, as a new user would do it: a served controller with
the digits cloud model, agents started with `edgefleet-agent run`, `edgefleet fleet status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, free_port

BIN = Path(sys.executable).parent
DIGITS = Path(os.environ.get("EDGEFLEET_DIGITS_DIR", REPO / "examples" / "digits"))
pytestmark = pytest.mark.skipif(
    not (DIGITS / "edge.onnx").is_file(), reason=f"digits models not in {DIGITS}"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal for the live table
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, f"{args} failed: {result.stderr}"
    return result


def wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.timeout(150)
def test_fleet_status_json(tmp_path: Path) -> None:
    cloud = DIGITS / "cloud.onnx" if (DIGITS / "cloud.onnx").is_file() else DIGITS / "edge.onnx"
    data = tmp_path / "controller"
    edgefleet = str(BIN / "edgefleet")
    agent_bin = str(BIN / "edgefleet-agent")
    grpc_port = free_port()
    controller = subprocess.Popen(
        [
            edgefleet, "controller", "serve", "--data-dir", str(data), "--grpc-host", "127.0.0.1",
            "--grpc-port", str(grpc_port), "--device-port", str(free_port()),
            "--mqtt-port", str(free_port()), "--http-port", "0", "--cloud-model", f"digits={cloud}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    agents: list[subprocess.Popen[str]] = []
    try:
        assert wait(lambda: (data / "client.toml").exists(), 30), "controller did not start"
        variant = tmp_path / "variant"
        run(
            agent_bin, "pack-model", "--onnx", str(DIGITS / "edge.onnx"),
            "--preprocess", str(DIGITS / "preprocess.json"),
            "--labels", str(DIGITS / "labels.txt"), "--out", str(variant), "--name", "digits",
        )  # fmt: skip
        with np.load(DIGITS / "test_corrupted.npz") as archive:
            frames = archive["x"][:60]
        np.save(tmp_path / "frames.npy", frames)
        for i in range(2):
            token = run(
                edgefleet, "--data-dir", str(data), "device", "register", f"cam-{i}", "--format",
                "json",
            ).stdout  # fmt: skip
            enrollment = json.loads(token)["enrollment_token"]
            agent_dir = tmp_path / f"agent-{i}"
            run(
                agent_bin, "enroll", "--data-dir", str(agent_dir), "--controller",
                f"127.0.0.1:{grpc_port}", "--token", enrollment,
            )  # fmt: skip
            agents.append(
                subprocess.Popen(
                    [
                        agent_bin,
                        "run",
                        "--data-dir",
                        str(agent_dir),
                        "--model",
                        str(variant),
                        "--source",
                        str(tmp_path / "frames.npy"),
                        "--telemetry-interval",
                        "0.5",
                        "--audit-rate",
                        "0.2",
                    ],
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )

        def status() -> list[dict[str, Any]]:
            out = run(edgefleet, "--data-dir", str(data), "fleet", "status", "--format", "json")
            return list(json.loads(out.stdout)["devices"])

        assert wait(lambda: all(d["frames"] == 60 for d in status()), 60), status()
        for device in status():
            assert device["online"] and device["variant_id"] == "digits:1:onnx-fp32"
            assert device["p50_latency_ms"] is not None and device["p95_latency_ms"] is not None
            assert device["offload_rate"] is not None and device["accuracy"] is not None
            low, high = device["accuracy_ci95"]
            assert low <= device["accuracy"] <= high
        table = run(edgefleet, "--data-dir", str(data), "fleet", "status").stdout
        assert "cam-0" in table and "cam-1" in table and "accuracy" in table
        watch = run(
            edgefleet, "--data-dir", str(data), "fleet", "watch", "--count", "1", "--interval", "1"
        )
        assert "cam-0" in watch.stdout
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            assert agent.wait(timeout=30) == 0, agent.stderr.read() if agent.stderr else ""
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=30) == 0, (
            controller.stderr.read() if controller.stderr else ""
        )
