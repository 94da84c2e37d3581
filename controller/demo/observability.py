"""Story: a device drifts. One agent runs its selected variant on clean Fashion-MNIST frames,
then on the same frames inverted (dark garment on a light background: the edge student is
wrong on most of them, often confidently). The controller's drift score (PSI of the
confidence distribution, agreement with the teacher against its validation value) fires an
alert within a minute, raises the device's offload budget through its desired state within
the fleet's ceiling, and the cascade recovers toward the cloud model's accuracy; `fleet
alerts`, `fleet events` and the estimate's interval against the truth close it; an operator
then labels some of the frames the cloud answered (`fleet label`), and the estimate, which
agreement alone leaves wide under such a shift, is read again with the labels."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from controller.demo.context import FASHION, DemoFailed, DemoRun, wait_for
from controller.demo.inference import cloud_only_labels, where_in
from controller.demo.models import fetch_selected, signed_updater

FPS = 20
CLEAN_FRAMES = 200  # 10 s at 20 fps
SHIFTED_FRAMES = 500  # 25 s
OFFLOAD_BUDGET = "0.2"
ALERT_WITHIN_S = 60.0
RULES = ("drift", "agreement_drop")
CEILING_FPS = 30.0  # the fleet's drift-aware offload ceiling in this story
LABELS = 60  # frames of the shift the operator labels
SOURCE = "drift"  # the drifting agent's frames: SOURCE.npy, frame ids SOURCE:INDEX


def _variant_dir(demo: DemoRun, name: str, work: Path) -> Path:
    refs = sorted(
        (m["version"], f"{m['name']}:{m['version']}")
        for m in demo.edgefleet_json("model", "list")
        if m["name"] == FASHION.edge_model
    )
    if not refs:
        raise DemoFailed(f"{FASHION.edge_model} is not in the registry: the models story builds it")
    profile = {d["name"]: d["profile"] for d in demo.edgefleet_json("device", "list")}[name]
    dest = work / f"{name}-variant"
    meta = fetch_selected(demo, signed_updater(demo, work / "tuf"), refs[-1][1], profile, dest)
    demo.say(f"{name} ({profile}) runs {meta.variant_id}")
    return dest


def _drift_alert(demo: DemoRun, device_id: str, since_ms: int) -> Any:
    """A drift alert on the device that opened after ``since_ms`` (one left open by the
    inference story's corrupted frames does not count)."""
    for alert in reversed(demo.controller.monitoring.alerts.active()):  # oldest first
        if alert.device_id == device_id and alert.rule in RULES and alert.started_ms >= since_ms:
            return alert
    return None


def _answers(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's answer and whether the cloud answered, in frame order."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows.sort(key=lambda a: int(a["frame_id"].rsplit(":", 1)[1]))
    return (np.array([a["label"] for a in rows], np.int64),
            np.array([a["source"] == "cloud" for a in rows]))  # fmt: skip


def _recovered_from(by_cloud: np.ndarray, start: int, run: int = 40) -> int | None:
    """The first frame from which ``run`` frames in a row were answered by the cloud."""
    streak = 0
    for i in range(start, len(by_cloud)):
        streak = streak + 1 if by_cloud[i] else 0
        if streak >= run:
            return i - run + 1
    return None


def _label_shifted_frames(
    demo: DemoRun, name: str, device_id: str, y: np.ndarray, truth: float
) -> None:
    """The operator gives LABELS of the shifted frames the cloud answered their true class
    (the first through `edgefleet fleet label`, the rest through the same admin API), and the
    estimate is read again."""
    from controller.cli.client import Connection, call, open_channel
    from edgefleet.v1 import fleet_pb2, fleet_pb2_grpc

    demo.step(f"an operator labels {LABELS} of the shifted frames the cloud answered "
              "(`edgefleet fleet frames`, `fleet label`); the estimate again")  # fmt: skip
    listed = demo.edgefleet_json("fleet", "frames", "--device", device_id, "--limit", "1000")

    def index(key: str) -> int:  # a frame key is DEVICE/SOURCE:INDEX
        return int(key.rsplit(":", 1)[1])

    keys = [f["frame_key"] for f in listed["frames"]
            if f["label"] is None and f"/{SOURCE}:" in f["frame_key"]]  # fmt: skip
    chosen = [k for k in keys if index(k) >= CLEAN_FRAMES][:LABELS]
    if not chosen:
        demo.say(f"no frame of {name}'s shift waits for a label")
        return

    def truth_of(key: str) -> str:
        return str(int(y[index(key)]))

    demo.say(demo.edgefleet("fleet", "label", chosen[0], truth_of(chosen[0])).rstrip())
    token = (demo.controller_dir / "operator.token").read_text().strip()
    ca = (demo.controller_dir / "pki" / "ca.pem").read_bytes()
    conn = Connection(demo.address, token, ca, 10.0)
    channel = open_channel(conn)
    try:
        stub = fleet_pb2_grpc.FleetAdminServiceStub(channel)
        for key in chosen[1:]:
            request = fleet_pb2.LabelFrameRequest(frame_key=key, label=truth_of(key))
            call(conn, stub.LabelFrame, request)
    finally:
        channel.close()
    status = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}[name]
    low, high = status["accuracy_ci95"]
    demo.say(
        f"{len(chosen)} labelled: estimate for {name} {status['accuracy']:.1%} [{low:.1%}, "
        f"{high:.1%}] over its {status['frames']} frames of the last minute; true accuracy "
        f"{truth:.1%}, {where_in(truth, low, high)}"
    )


def story(demo: DemoRun) -> None:
    w = FASHION
    test = w.validation.parent / "test.npz"  # clean frames (the inference story's are corrupted)
    w.require(w.edge_onnx, w.edge_preprocess, w.cloud_onnx, test)
    name = sorted(demo.agent_dirs)[0]
    device_id = next(d["device_id"] for d in demo.edgefleet_json("device", "list")
                     if d["name"] == name)  # fmt: skip
    work = demo.root / "observability"
    work.mkdir(exist_ok=True)
    # Drift-aware offload is off until here (ceiling 0, as `controller serve` defaults), so
    # the earlier stories measure the budgets they set; the operator's flag is
    # --offload-ceiling-fps, this sets the same OffloadBudgets at run time.
    ceiling = CEILING_FPS

    def still_drifting() -> bool:  # from the inference story's corrupted frames
        alerts = demo.controller.monitoring.alerts.active()
        return any(a.device_id == device_id and a.rule in RULES for a in alerts)

    # the grant must come from this story's shift, not from frames still in the window
    if still_drifting() and not wait_for(lambda: not still_drifting(), 120, 1.0):
        raise DemoFailed(f"{name}'s drift alerts from the earlier story did not end")
    demo.controller.offload_budgets.set_ceiling(ceiling)

    demo.step(
        f"{name} drifts: {CLEAN_FRAMES} clean frames, then {SHIFTED_FRAMES} inverted ones, at "
        f"{FPS} frames/s with a {float(OFFLOAD_BUDGET):.0%} offload budget; the controller "
        f"scores drift every {demo.controller.config.alert_interval_s:g} s (fleet offload "
        f"ceiling {ceiling:g} frames/s)"
    )
    variant = _variant_dir(demo, name, work)
    total = CLEAN_FRAMES + SHIFTED_FRAMES
    with np.load(test) as data:
        x, y = data["x"][:total].copy(), data["y"][:total]
    x[CLEAN_FRAMES:] = 255 - x[CLEAN_FRAMES:]
    np.save(work / f"{SOURCE}.npy", x)
    results = work / "answers.jsonl"
    since_ms = int(time.time() * 1000)
    demo.start_agent(
        name, "--model", str(variant), "--source", str(work / f"{SOURCE}.npy"), "--fps", str(FPS),
        "--offload-budget", OFFLOAD_BUDGET, "--telemetry-interval", "1", "--no-ota",
        "--results", str(results),
    )  # fmt: skip
    started = time.monotonic()
    shift_s = started + CLEAN_FRAMES / FPS  # about when the inverted frames begin
    if not wait_for(
        lambda: _drift_alert(demo, device_id, since_ms) is not None, CLEAN_FRAMES / FPS + 90, 0.5
    ):
        raise DemoFailed(f"no drift alert on {name} within {ALERT_WITHIN_S:.0f} s of the shift")
    alert = _drift_alert(demo, device_id, since_ms)
    after_s = time.monotonic() - shift_s
    demo.say(
        f"alert {alert.rule} fired about {after_s:.0f} s after the shift: {alert.message}\n"
        f"    evidence: {json.dumps(alert.evidence, sort_keys=True)}"
    )
    if after_s > ALERT_WITHIN_S:
        raise DemoFailed(f"the drift alert came {after_s:.0f} s after the shift (> 60 s)")
    if not wait_for(lambda: demo.controller.offload_budgets.budget(device_id) > 0, 30, 0.5):
        raise DemoFailed("the controller did not raise the drifting device's offload budget")
    granted = demo.controller.offload_budgets.budget(device_id)
    demo.say(f"offload budget of {name} raised to {granted:.1f} frames/s (ceiling {ceiling:g})")
    if granted > ceiling:
        raise DemoFailed(f"granted {granted:.1f} frames/s above the ceiling {ceiling:g}")

    if not wait_for(lambda: results.is_file() and len(results.read_text().splitlines()) >= total,
                    total / FPS + 60, 1.0):  # fmt: skip
        raise DemoFailed(f"{name} did not answer all {total} frames")
    demo.step("the cascade on the shifted frames, against the labels, before and after the raise")
    label, by_cloud = _answers(results)
    cloud = cloud_only_labels(x)
    shifted = slice(CLEAN_FRAMES, total)
    recovered = _recovered_from(by_cloud, CLEAN_FRAMES)
    edge_acc = float((label[CLEAN_FRAMES:] == y[shifted]).mean())
    demo.say(
        f"clean frames: cascade {float((label[:CLEAN_FRAMES] == y[:CLEAN_FRAMES]).mean()):.1%}"
    )
    demo.say(f"inverted frames, all: cascade {edge_acc:.1%}, cloud alone "
             f"{float((cloud[shifted] == y[shifted]).mean()):.1%}")  # fmt: skip
    if recovered is None:
        demo.say("the budget raise did not reach the agent's answers before its frames ran out")
    else:
        before = slice(CLEAN_FRAMES, recovered)
        after = slice(recovered, total)
        a_before = float((label[before] == y[before]).mean()) if recovered > CLEAN_FRAMES else 0.0
        a_after = float((label[after] == y[after]).mean())
        c_after = float((cloud[after] == y[after]).mean())
        demo.say(
            f"  before the raise ({recovered - CLEAN_FRAMES} frames): cascade {a_before:.1%}\n"
            f"  after it ({total - recovered} frames, {float(by_cloud[after].mean()):.0%} "
            f"answered by the cloud): cascade {a_after:.1%} vs cloud alone {c_after:.1%} = "
            f"{a_after / c_after:.2f} x cloud only"
        )
    status = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}[name]
    low, high = status["accuracy_ci95"]
    truth = float((label == y).mean())
    demo.say(
        f"fleet estimate for {name} over its {status['frames']} frames: {status['accuracy']:.1%} "
        f"[{low:.1%}, {high:.1%}]; true accuracy {truth:.1%}, {where_in(truth, low, high)}"
    )

    _label_shifted_frames(demo, name, device_id, y, truth)

    demo.step("what an operator sees: `edgefleet fleet drift`, `fleet alerts`, `fleet events`")
    demo.say(demo.edgefleet("fleet", "drift").rstrip())
    demo.say(demo.edgefleet("fleet", "alerts").rstrip())
    demo.say(demo.edgefleet("fleet", "events", "--since", "5m", "--kind", "alert", "--kind",
                            "offload", "--limit", "8").rstrip())  # fmt: skip
    demo.start_agent(name)  # back to plain presence
    demo.controller.offload_budgets.set_ceiling(0.0)
