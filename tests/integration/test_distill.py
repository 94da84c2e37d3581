"""Distillation through a real controller (port 0): the training runner end to end on the
digits workload (its cloud model as the teacher), DistillModel over gRPC, the CLI, and every
refusal leaving the catalogue as it was."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("torch")

from controller.app import Controller
from controller.services.model_training import DistillRequest
from controller.training.errors import (
    TrainingCancelled,
    TrainingDataError,
    TrainingTimedOut,
    TrainingUnavailable,
    UnknownArchitecture,
)
from edgefleet.errors import NotFound
from edgefleet.v1 import models_pb2, models_pb2_grpc
from tests.fleet import Admin, edgefleet_cli, start_controller, status_code

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
TEACHER = "digits-cloud"


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    ctl = start_controller(tmp_path_factory.mktemp("distill") / "controller")
    store = ctl.model_parts.store
    ctl.models.add_model(
        TEACHER,
        store.put_file(DIGITS / "cloud.onnx").sha256,
        store.put_file(DIGITS / "validation.npz").sha256,
        labels=[line for line in (DIGITS / "labels.txt").read_text().splitlines() if line],
        preprocess_json=(DIGITS / "preprocess.json").read_text(),
    )
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def train_sha(controller: Controller) -> str:
    """Digits training frames: calibration + test_corrupted (500 frames, labelled)."""
    parts = [np.load(DIGITS / f"{n}.npz") for n in ("calibration", "test_corrupted")]
    x, y = np.concatenate([p["x"] for p in parts]), np.concatenate([p["y"] for p in parts])
    return _put(controller, x, y)


def _put(controller: Controller, x: np.ndarray, y: np.ndarray) -> str:
    import io

    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return controller.model_parts.store.put_bytes(buf.getvalue()).sha256


def _versions(controller: Controller) -> list[str]:
    return [m.ref for m in controller.models.list_models()]


def _request(train_sha: str, **kw: object) -> DistillRequest:
    base: dict[str, object] = dict(
        teacher=TEACHER, student="mobilenet-w0.5", data_sha256=train_sha, epochs=1,
        batch_size=64, max_seconds=120.0,
    )  # fmt: skip
    return DistillRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_the_runner_registers_a_distilled_student_and_continues_from_it(
    controller: Controller, train_sha: str
) -> None:
    phases: list[str] = []
    report = controller.training.distill(
        _request(train_sha, epochs=2, name="digits-small"),
        lambda phase, fraction, message: phases.append(phase),
        threading.Event(),
    )
    assert report.model.ref == "digits-small:1" and report.model.role == "edge"
    assert tuple(report.model.input_shape[1:]) == (1, 32, 32)
    assert report.model.labels == controller.models.info(TEACHER).labels
    assert report.validation_frames == 300 and report.trained_frames == 1000  # 1 copy
    assert 0.0 < report.student_accuracy <= 1.0 and report.teacher_accuracy > 0.9
    assert report.latency_ms > 0 and report.parameters == 9346
    assert set(report.phase_seconds) == {"data", "teacher", "train", "export", "register"}
    assert phases[-1] == "register" and "train" in phases
    data = json.loads(report.to_json())
    assert data["model"]["ref"] == "digits-small:1" and data["wall_seconds"] > 0
    # the next version starts from the registered one (its ONNX source, through onnx2torch)
    again = controller.training.distill(
        _request(train_sha, name="digits-small", init_from_version=1),
        lambda *_: None,
        threading.Event(),
    )
    assert again.model.ref == "digits-small:2" and again.student == "digits-small:1"
    assert again.student_accuracy >= report.student_accuracy - 0.05


def test_nothing_is_registered_on_cancel_timeout_or_bad_input(
    controller: Controller, train_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _versions(controller)
    runner = controller.training
    cancel = threading.Event()

    def cancel_in_training(phase: str, fraction: float, message: str) -> None:
        if phase == "train":
            cancel.set()

    with pytest.raises(TrainingCancelled):
        runner.distill(_request(train_sha, name="never"), cancel_in_training, cancel)
    with pytest.raises(TrainingTimedOut):
        runner.distill(_request(train_sha, name="never", max_seconds=0.05), lambda *_: None,
                       threading.Event())  # fmt: skip
    with pytest.raises(UnknownArchitecture, match=r"known: mobilenet-w0\.5"):
        runner.distill(_request(train_sha, student="resnet-152"), lambda *_: None,
                       threading.Event())  # fmt: skip
    with pytest.raises(NotFound, match="no model nope"):
        runner.distill(_request(train_sha, teacher="nope"), lambda *_: None, threading.Event())
    wrong_shape = _put(controller, np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64))
    with pytest.raises(TrainingDataError, match=r"\[28, 28\] but the teacher's validation"):
        runner.distill(_request(wrong_shape), lambda *_: None, threading.Event())
    bad_labels = _put(controller, np.zeros((8, 32, 32), np.uint8), np.full(8, 12))
    with pytest.raises(TrainingDataError, match=r"labels must be 0\.\.9"):
        runner.distill(_request(bad_labels), lambda *_: None, threading.Event())
    with pytest.raises(NotFound, match="not uploaded"):
        runner.distill(_request("ab" * 32), lambda *_: None, threading.Event())
    with pytest.raises(TrainingDataError, match="alpha"):
        runner.distill(_request(train_sha, alpha=1.5), lambda *_: None, threading.Event())
    with monkeypatch.context() as patch:  # a controller without the train extra
        patch.setitem(sys.modules, "torch", None)
        with pytest.raises(TrainingUnavailable, match=r"install the train extra"):
            runner.distill(_request(train_sha), lambda *_: None, threading.Event())
    assert _versions(controller) == before


def test_distill_over_grpc_streams_progress_then_the_report_and_maps_errors(
    controller: Controller, train_sha: str
) -> None:
    admin = Admin(controller)
    try:
        stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
        request = models_pb2.DistillModelRequest(
            teacher=TEACHER, student="mobilenet-w0.5-r50", data_sha256=train_sha, name="grpc-s",
            epochs=1, batch_size=64, max_seconds=120,
        )  # fmt: skip
        events = list(stub.DistillModel(request, timeout=120))
        assert all(e.HasField("progress") for e in events[:-1]) and len(events) > 3
        report = json.loads(events[-1].report_json)
        assert report["model"]["ref"] == "grpc-s:1" and report["input_size"] == [16, 16]
        assert report["alpha"] == 0.7  # the default: alpha_set is false
        bad = models_pb2.DistillModelRequest(teacher=TEACHER, student="x", data_sha256=train_sha)
        with pytest.raises(grpc.RpcError) as exc:
            list(stub.DistillModel(bad, timeout=30))
        assert status_code(exc.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown student architecture" in (exc.value.details() or "")
        missing = models_pb2.DistillModelRequest(teacher="nope", student="mobilenet-w0.5",
                                                 data_sha256=train_sha)  # fmt: skip
        with pytest.raises(grpc.RpcError) as exc:
            list(stub.DistillModel(missing, timeout=30))
        assert status_code(exc.value) == grpc.StatusCode.NOT_FOUND
        # the client goes away mid-run: the run is cancelled and registers nothing
        before = _versions(controller)
        call = stub.DistillModel(
            models_pb2.DistillModelRequest(
                teacher=TEACHER, student="mobilenet-w1.5", data_sha256=train_sha, name="gone",
                epochs=50, max_seconds=120,
            ),
            timeout=120,
        )  # fmt: skip
        for event in call:
            if event.progress.phase == "train":
                call.cancel()
                break
        assert controller.training._slot.acquire(timeout=30)  # the run ended
        controller.training._slot.release()
        assert _versions(controller) == before
    finally:
        admin.close()


def test_the_cli_distills_with_a_summary_and_refuses_bad_input_in_one_line(
    controller: Controller, tmp_path: Path
) -> None:
    data_dir = controller.config.data_dir
    text = edgefleet_cli(
        data_dir, "model", "distill", f"{TEACHER}:1", "--student", "mobilenet-w0.5",
        "--data", str(DIGITS / "calibration.npz"), "--name", "cli-s", "--epochs", "1",
        timeout_s=120,
    ).stdout  # fmt: skip
    assert "registered cli-s:1" in text and "teacher digits-cloud:1" in text
    assert "validation accuracy: student" in text and "wall time" in text
    listed = json.loads(edgefleet_cli(data_dir, "model", "list", "--format", "json").stdout)
    assert "cli-s" in {m["name"] for m in listed}
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 28, 28), np.float32), y=np.zeros(4))
    for args, message in (
        (["--student", "resnet", "--data", str(DIGITS / "calibration.npz")], "known: mobilenet"),
        (["--student", "mobilenet-w0.5", "--data", str(tmp_path / "no.npz")], "no such file"),
        (["--student", "mobilenet-w0.5", "--data", str(tmp_path / "bad.npz")], "uint8"),
    ):
        bad = edgefleet_cli(data_dir, "model", "distill", TEACHER, *args, check=False)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    missing = edgefleet_cli(
        data_dir, "model", "distill", "nope", "--student", "mobilenet-w0.5",
        "--data", str(DIGITS / "calibration.npz"), check=False,
    )  # fmt: skip
    assert missing.returncode != 0 and "no model nope" in missing.stderr
    students = json.loads(edgefleet_cli(data_dir, "model", "students", "--format", "json").stdout)
    assert {"mobilenet-w1.0", "mobilenet-w0.5-r50"} <= {s["name"] for s in students}
