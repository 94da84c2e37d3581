"""The agent's inference loop as the assembly builds it (agent.assembly.build_inference: real
ONNX Runtime models, a real frame file, the --results writer), its events fanned out to
every listener: the results writer, the OTA probation feed and any other listener each hear
every frame, and a model that fails on the running frames is counted as failing."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.assembly import AgentConfig, build_inference
from agent.inference.active import ActiveModel
from agent.inference.agent import FrameFailed, InferenceEvent, Result
from agent.ota import machine as m
from agent.ota.component import ProbationFeed
from agent.pack import pack_model
from agent.telemetry.aggregator import TelemetryAggregator
from controller.optimize.synthetic import make_tiny_cnn, synthetic_frames
from tests.rollout_fleet import PRE

FRAMES = 60


class Observations:
    """Stands where OtaService.observe is: what the probation feed reported."""

    def __init__(self) -> None:
        self.seen: list[m.ProbationMetrics] = []
        self.lock = threading.Lock()

    def observe(self, metrics: m.ProbationMetrics) -> None:
        with self.lock:
            self.seen.append(metrics)


def _variant(tmp: Path, onnx_path: Path, name: str) -> Path:
    pre = tmp / "preprocess.json"
    pre.write_text(json.dumps(dataclasses.asdict(PRE)))
    pack_model(onnx_path, pre, tmp / name, None, "tiny")
    return tmp / name


def _nan_model(path: Path) -> Path:
    """Log(x - 0.5) before pooling: finite on the smoke test's [0, 255) inputs, NaN on any
    preprocessed frame with a pixel below half brightness."""
    nodes = [
        helper.make_node("Sub", ["input", "half"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["logged"]),
        helper.make_node("GlobalAveragePool", ["logged"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "nan-on-dark",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
         numpy_helper.from_array(np.linspace(-1, 1, 10, dtype=np.float32)[:, None], "w"),
         numpy_helper.from_array(np.zeros(10, np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _run_loop(
    tmp: Path, variant: Path, listeners: list[object], source: Path | None = None
) -> tuple[list[dict[str, object]], TelemetryAggregator]:
    if source is None:
        source = tmp / "frames.npy"
        np.save(source, synthetic_frames(FRAMES))
    results = tmp / "results.jsonl"
    config = AgentConfig(
        data_dir=tmp / "agent", model_dir=variant, source=str(source), results_file=results
    )
    telemetry = TelemetryAggregator("listener-test")
    with contextlib.ExitStack() as stack:
        model = ActiveModel(1)
        loop = build_inference(config, model, telemetry, _no_channel(), listeners, stack)  # type: ignore[arg-type]
        loop.start()  # waits for a model
        model.load(variant)
        assert loop.done.wait(60)
        loop.stop()
    return [json.loads(line) for line in results.read_text().splitlines()], telemetry


def _no_channel() -> object:
    import grpc

    return grpc.insecure_channel("127.0.0.1:9")  # offloads never happen: no client waits


@pytest.mark.timeout(60)
def test_results_writer_probation_feed_and_a_listener_all_hear_every_frame(
    tmp_path: Path,
) -> None:
    variant = _variant(tmp_path, make_tiny_cnn(tmp_path / "tiny.onnx", width=4), "v")
    heard: list[InferenceEvent] = []
    observed = Observations()
    written, _ = _run_loop(tmp_path, variant, [heard.append, ProbationFeed(observed, window=10)])
    assert len(written) == FRAMES
    assert [r.frame_id for r in heard if isinstance(r, Result)] == [w["frame_id"] for w in written]
    assert sum(o.frames for o in observed.seen) == FRAMES  # 6 windows of 10
    assert all(o.error_rate == 0.0 and o.latency_ms is not None for o in observed.seen)


@pytest.mark.timeout(60)
def test_a_model_failing_on_the_running_frames_shows_in_probation_health(
    tmp_path: Path,
) -> None:
    variant = _variant(tmp_path, _nan_model(tmp_path / "nan.onnx"), "nan")
    heard: list[InferenceEvent] = []
    observed = Observations()
    written, telemetry = _run_loop(
        tmp_path, variant, [heard.append, ProbationFeed(observed, window=10)]
    )
    failed = [e for e in heard if isinstance(e, FrameFailed)]
    assert len(failed) > FRAMES // 2, len(failed)  # the loop kept going: every frame judged
    assert len(failed) + len(written) == FRAMES
    assert sum(o.frames for o in observed.seen) == FRAMES
    worst = max(o.error_rate for o in observed.seen)
    assert worst > m.UpdateConfig().max_error_rate, observed.seen
    assert telemetry.report().errors  # and the fleet sees the errors too


@pytest.mark.timeout(60)
def test_corrupt_images_are_counted_as_bad_frames(tmp_path: Path) -> None:
    from PIL import Image

    variant = _variant(tmp_path, make_tiny_cnn(tmp_path / "tiny.onnx", width=4), "v")
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(synthetic_frames(4)):
        Image.fromarray(frame).save(images / f"{i}.png")
    (images / "9.png").write_bytes(b"not a png")
    written, telemetry = _run_loop(tmp_path, variant, [], images)
    assert len(written) == 4
    assert telemetry.report().errors["bad_frame:corrupt_image"] == 1
