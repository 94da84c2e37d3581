"""The Triton cloud-model backend (controller.serving.triton) against a real Triton Inference
Server: PyTriton's bundled tritonserver in .venv-triton (scripts/triton-venv.sh), serving the
digits cloud model in ONNX Runtime (scripts/triton_serve.py), reached over the open inference
protocol's HTTP binding, and offloaded to through the controller's OffloadService."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.inference import GrpcOffloadClient, OffloadFrame
from controller.grpc.offload_servicer import OffloadServicer, start_insecure_server
from controller.optimize.source import load_preprocessing
from controller.serving import CloudModel, ServingFailure
from controller.serving.triton import TritonModel

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
VENV_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
# tritonserver's start, its Python backend's stub and PyTriton's readiness checks: seconds
# here, with room for a machine busy with the other test worker (the first test's timeout).
READY_S = 180
pytestmark = pytest.mark.skipif(
    not VENV_PYTHON.exists() or (ROOT / ".venv-triton" / ".edgefleet-incomplete").exists(),
    reason="no Triton server: run scripts/triton-venv.sh (scripts/bootstrap.sh does)",
)


def free_port() -> int:
    """A port the OS picked (tritonserver takes no port 0), free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def triton_url() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [str(VENV_PYTHON), str(ROOT / "scripts" / "triton_serve.py"),
         str(DIGITS / "cloud.onnx"), "digits-cloud", "--http-port", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,  # its own process group: tritonserver goes with it
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    # A thread reads its output line by line and keeps draining it: select() on the pipe misses
    # lines already in the reader's buffer ("ready" arriving with Triton's last log line waited
    # out the whole bound in CI), and an undrained pipe would block tritonserver once full.
    lines: queue.Queue[str] = queue.Queue()
    output = server.stdout

    def pump() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        give_up, seen = time.monotonic() + READY_S, collections.deque[str](maxlen=5)
        while not (seen and seen[-1].startswith("ready")) and time.monotonic() < give_up:
            if server.poll() is not None:
                pytest.fail(f"the Triton server exited with {server.returncode}: {list(seen)}")
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        assert seen and seen[-1].startswith("ready"), (
            f"the Triton server did not get ready in {READY_S} s; its last lines: {list(seen)}"
        )
        yield f"127.0.0.1:{port}"
    finally:
        server.stdin.close()  # it stops when its stdin closes
        for sig in (None, signal.SIGTERM, signal.SIGKILL):  # PyTriton's stop can take 30 s
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, sig)
            try:
                server.wait(8)
                break
            except subprocess.TimeoutExpired:
                continue


def triton_model(url: str, name: str = "digits-cloud") -> TritonModel:
    labels = (DIGITS / "labels.txt").read_text().split()
    pre = load_preprocessing(DIGITS / "preprocess.json")
    return TritonModel(url, name, pre, "digits:triton", labels, max_in_flight=8)


@pytest.mark.timeout(READY_S + 60)
def test_offloads_answered_by_a_real_triton_server_as_by_the_model_in_process(
    triton_url: str,
) -> None:
    model = triton_model(triton_url)
    model.check_ready()
    local = CloudModel(DIGITS / "cloud.onnx", model.preprocessing, "digits:local", model.labels)
    servicer = OffloadServicer({"digits": model}, identify=lambda _c: "device-1")
    server, port = start_insecure_server(servicer, max_workers=8)
    client = GrpcOffloadClient.insecure(f"127.0.0.1:{port}")
    with np.load(DIGITS / "validation.npz") as data:
        frames = data["x"][:24]
    try:
        answers = [
            client.offload(OffloadFrame("digits", "d:1", f"f{i}", f, 0, 0.1), timeout_s=5.0)
            for i, f in enumerate(frames)
        ]
    finally:
        client.close()
        server.stop(None)
    expected = [local.predict(f) for f in frames]
    assert [a.label for a in answers] == [e.label for e in expected]
    assert np.allclose([a.confidence for a in answers], [e.confidence for e in expected], atol=1e-5)
    assert {a.model_id for a in answers} == {"digits:triton"}
    assert all(a.infer_ms > 0 for a in answers)


@pytest.mark.timeout(READY_S + 60)
def test_a_missing_model_or_server_is_a_serving_failure_not_a_hang(triton_url: str) -> None:
    with pytest.raises(ServingFailure, match="no ready model"):
        triton_model(triton_url, "no-such-model").check_ready()
    gone = triton_model(f"127.0.0.1:{free_port()}")  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(ServingFailure):
        gone.predict(np.zeros((32, 32), np.uint8), timeout_s=2.0)
    assert time.perf_counter() - started < 6.0


@pytest.mark.timeout(READY_S + 60)
def test_a_cloud_model_spec_names_the_triton_server(triton_url: str) -> None:
    """--cloud-model digits=triton+http://HOST:PORT/MODEL:preprocess.json, as the controller
    loads it (CloudModels), answers offloads; its plan says where it is served."""
    from controller.errors import ConfigError
    from controller.services.offload import CloudModels, parse_cloud_model_spec

    pre = DIGITS / "preprocess.json"
    models = CloudModels(
        [parse_cloud_model_spec(f"digits=triton+http://{triton_url}/digits-cloud:{pre}")]
    )
    models.preload()
    servicer = OffloadServicer(models, identify=lambda _c: "device-1")
    server, port = start_insecure_server(servicer, max_workers=4)
    client = GrpcOffloadClient.insecure(f"127.0.0.1:{port}")
    try:
        answer = client.offload(
            OffloadFrame("digits", "d:1", "f", np.zeros((32, 32), np.uint8), 0, 0.1), 5.0
        )
        plan = models.plan_for("digits:triton")
    finally:
        client.close()
        server.stop(None)
        models.close()
    assert answer.model_id == "digits:triton"
    assert plan is not None and "forwarded to Triton at" in plan.reason
    with pytest.raises(ConfigError, match="HOST:PORT/MODEL"):
        parse_cloud_model_spec(f"digits=triton+http://{triton_url}/digits-cloud")  # no preprocess
    missing = CloudModels([parse_cloud_model_spec(f"d=triton+http://{triton_url}/nope:{pre}")])
    with pytest.raises(ConfigError, match="no ready model"):
        missing.preload()
