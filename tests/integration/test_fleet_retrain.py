"""The fleet loop through a real controller (port 0): devices offload over mutual TLS, the
opt-in hard-example policy keeps only its devices' frames, `model hard-examples` shows and
changes it, `model retrain --from-fleet` distils the next edge version on those frames (digits,
tiny epochs), and every refusal is one clear line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("torch")

from agent.controller_client import device_channel
from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Credentials
from controller.app import Controller
from controller.demo.retrain_shift import night_camera
from edgefleet.v1 import inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from tests.fleet import Admin, edgefleet_cli, start_controller, status_code

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
EDGE, CLOUD = "digits-edge", "digits-cloud"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Controller, Admin, Path]]:
    root = tmp_path_factory.mktemp("fleet-retrain")
    ctl = start_controller(root / "controller")
    store = ctl.model_parts.store
    labels = [line for line in (DIGITS / "labels.txt").read_text().splitlines() if line]
    pre = (DIGITS / "preprocess.json").read_text()
    validation = store.put_file(DIGITS / "validation.npz").sha256
    calibration = store.put_file(DIGITS / "calibration.npz").sha256
    ctl.models.add_model(EDGE, store.put_file(DIGITS / "edge.onnx").sha256, validation,
                         calibration, labels, pre)  # fmt: skip
    ctl.models.add_model(CLOUD, store.put_file(DIGITS / "cloud.onnx").sha256, validation,
                         labels=labels, preprocess_json=pre, cloud_for=EDGE)  # fmt: skip
    admin = Admin(ctl)
    for name, site in (("night-1", "night"), ("day-1", "day")):
        enroll(root / name, admin.address, admin.register(name, "auto", site=site), detect())
    yield ctl, admin, root
    admin.close()
    ctl.stop()


def _offload(ctl: Controller, root: Path, device: str, frames: np.ndarray, start: int) -> None:
    channel = device_channel(
        f"127.0.0.1:{ctl.device_port}", Credentials.load(root / device), 8 << 20
    )
    try:
        stub = inference_pb2_grpc.OffloadServiceStub(channel)
        for i, frame in enumerate(frames):
            tensor = inference_pb2.Tensor(
                dtype=inference_pb2.TENSOR_DTYPE_UINT8, shape=list(frame.shape),
                data=frame.tobytes(),
            )  # fmt: skip
            request = inference_pb2.OffloadRequest(
                model=EDGE, frame=tensor, frame_id=f"{device}:{start + i}", edge_label=1,
                edge_confidence=0.3,
            )  # fmt: skip
            stub.Offload(request, timeout=30)
    finally:
        channel.close()
    assert ctl.hard_examples.flush(10)


def _cli(ctl: Controller, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return edgefleet_cli(ctl.config.data_dir, *args, check=check, timeout_s=180)


def test_policy_opt_in_devices_and_the_cli(fleet: tuple[Controller, Admin, Path]) -> None:
    ctl, _, root = fleet
    with np.load(DIGITS / "validation.npz") as z:
        shifted = night_camera(z["x"][:60], seed=1)
    _offload(ctl, root, "night-1", shifted[:10], 0)  # no policy yet: nothing is kept
    shown = json.loads(_cli(ctl, "model", "hard-examples", EDGE, "--format", "json").stdout)
    assert shown["enabled"] is False and shown["stored"]["frames"] == 0

    out = _cli(ctl, "model", "hard-examples", EDGE, "--enable", "--device-label", "site=night",
               "--max-mb", "5", "--retention", "7d").stdout  # fmt: skip
    assert "hard examples: on, cap 5.0 MB, retention 1w, from labels site=night" in out
    _offload(ctl, root, "night-1", shifted[10:50], 10)
    _offload(ctl, root, "day-1", shifted[50:], 50)  # site=day: not the policy's
    stored = ctl.hard_examples.frames(EDGE)
    night = next(d.device_id for d in ctl.registry.list_devices() if d.name == "night-1")
    assert len(stored) == 40 and {f.device_id for f in stored} == {night}
    assert all(f.edge_confidence == pytest.approx(0.3) for f in stored)
    ctl.registry.label("day-1", {"site": "night"}, [])  # relabelled: covered from its next frame
    _offload(ctl, root, "day-1", shifted[:2], 100)
    ctl.registry.label("day-1", {"site": "day"}, [])
    _offload(ctl, root, "day-1", shifted[2:4], 102)
    assert [f.frame_id for f in ctl.hard_examples.frames(EDGE)][-2:] == ["day-1:100", "day-1:101"]

    variants = _cli(ctl, "model", "variants", EDGE).stdout
    assert "hard examples: on" in variants and "42 frames stored" in variants

    bad = _cli(ctl, "model", "hard-examples", EDGE, "--retention", "soon", check=False)
    assert bad.returncode != 0 and "bad retention 'soon'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    unknown = _cli(ctl, "model", "hard-examples", "nope", "--enable", check=False)
    assert unknown.returncode != 0 and "no model 'nope'" in unknown.stderr
    cloud = _cli(ctl, "model", "hard-examples", CLOUD, "--enable", check=False)
    assert "is a cloud model" in cloud.stderr
    stranger = _cli(ctl, "model", "hard-examples", EDGE, "--devices", "ghost", check=False)
    assert stranger.returncode != 0 and "ghost" in stranger.stderr


def test_retrain_from_the_fleet_registers_the_next_version(
    fleet: tuple[Controller, Admin, Path],
) -> None:
    ctl, admin, _ = fleet
    if not ctl.hard_examples.frames(EDGE):
        test_policy_opt_in_devices_and_the_cli(fleet)
    stub = models_pb2_grpc.ModelAdminServiceStub(admin.channel)
    with pytest.raises(grpc.RpcError) as none_yet:
        list(stub.RetrainModel(models_pb2.RetrainModelRequest(model=EDGE, since_unix_ms=2**50),
                               timeout=30))  # fmt: skip
    assert status_code(none_yet.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "no hard frames stored for digits-edge" in (none_yet.value.details() or "")
    with pytest.raises(grpc.RpcError) as unknown:
        list(stub.RetrainModel(models_pb2.RetrainModelRequest(model="nope"), timeout=30))
    assert status_code(unknown.value) == grpc.StatusCode.NOT_FOUND

    result = _cli(ctl, "model", "retrain", EDGE, "--from-fleet", "--since", "1h", "--data",
                  str(DIGITS / "calibration.npz"), "--epochs", "1", "--batch-size", "64",
                  "--format", "json")  # fmt: skip
    report = json.loads(result.stdout)
    assert report["model"]["ref"] == f"{EDGE}:2" and report["started_from"] == f"{EDGE}:1"
    assert report["hard_frames"]["frames"] == 42 and report["train_frames"] == 242
    assert report["teacher"] == f"{CLOUD}:1"
    assert any("model build digits-edge:2" in step for step in report["next_steps"])
    with np.load(ctl.model_parts.store.open(report["hard_frames"]["sha256"])) as z:
        assert z["x"].shape == (42, 32, 32) and z["x"].dtype == np.uint8 and len(z["y"]) == 42
    assert ctl.models.info(EDGE).version == 2

    missing = _cli(ctl, "model", "retrain", EDGE, check=False)
    assert missing.returncode != 0 and "--from-fleet" in missing.stderr
    later = _cli(ctl, "model", "retrain", EDGE, "--from-fleet", "--since", "2099-01-01",
                 check=False)  # fmt: skip
    assert later.returncode != 0 and "none since then" in later.stderr
