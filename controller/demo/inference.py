"""Story: the enrolled agents run the Fashion-MNIST edge student on the corrupted test split
(a share each), offload hard frames to the controller's cloud teacher over mutual-TLS gRPC,
and `fleet status` estimates the cascade's accuracy from edge/cloud agreement alone. The
labels then say what it really was, next to the edge model alone and the cloud model alone."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.demo.context import FASHION, DemoFailed, DemoRun, wait_for

AUDIT_RATE = "0.2"  # a larger audit sample than the 2% default, for a tighter interval
OFFLOAD_BUDGET = "0.25"  # the share of frames the workload was designed to offload
# Paced like a camera: each agent's share (~667 frames) takes about 13 s, and the cloud model
# (milliseconds a frame on this machine) keeps up with every agent's hard and audit frames
# within the offload deadline. Unpaced, a share would arrive in a burst the cloud could not
# answer in time, and failed offloads would blur the cascade's accuracy.
FPS = "50"


@dataclass(frozen=True)
class Answers:
    """One agent's answers (from --results), by position in its share of the frames."""

    label: np.ndarray  # the cascade's answer
    edge_label: np.ndarray  # what the edge model said
    by_cloud: np.ndarray  # answered by the cloud model
    offloaded: np.ndarray  # offload attempted (answered by the cloud or failed)

    @classmethod
    def read(cls, path: Path, count: int) -> Answers:
        label = np.full(count, -1, np.int64)
        edge = np.full(count, -1, np.int64)
        by_cloud = np.zeros(count, bool)
        offloaded = np.zeros(count, bool)
        for line in path.read_text().splitlines():
            a: dict[str, Any] = json.loads(line)
            i = int(a["frame_id"].rsplit(":", 1)[1])
            label[i], edge[i] = a["label"], a["edge_label"]
            by_cloud[i], offloaded[i] = a["source"] == "cloud", a["offloaded"]
        return cls(label, edge, by_cloud, offloaded)


def _serve_cloud_model(demo: DemoRun) -> None:
    """Use the registry's cloud model when the models story registered one, else the file."""
    w = FASHION
    models = demo.controller.cloud_models
    if models.get(w.edge_model) is not None:
        demo.say(f"cloud model for {w.edge_model}: {w.cloud_model}, from the model registry")
        return
    from controller.services.offload import parse_cloud_model_spec

    models.add_spec(parse_cloud_model_spec(f"{w.edge_model}={w.cloud_onnx}"))
    demo.say(f"cloud model for {w.edge_model}: {w.cloud_onnx}")


def cloud_only_labels(x: np.ndarray) -> np.ndarray:
    """The cloud model's answer for every frame, through the product's preprocessing
    (edgefleet.frames) and ONNX Runtime, as if every frame were offloaded."""
    import onnxruntime as ort

    from edgefleet.frames import frames_tensor
    from edgefleet.modelmeta import Preprocessing

    pre = Preprocessing.from_file(FASHION.cloud_preprocess)
    session = ort.InferenceSession(str(FASHION.cloud_onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [
        session.run(None, {name: frames_tensor(x[s : s + 200], pre)})[0].argmax(axis=1)
        for s in range(0, len(x), 200)
    ]
    return np.concatenate(batches).astype(np.int64)


def story(demo: DemoRun) -> None:
    w = FASHION
    w.require(w.edge_onnx, w.edge_preprocess, w.cloud_onnx, w.cloud_preprocess, w.labels,
              w.test_corrupted)  # fmt: skip
    names = sorted(demo.agent_dirs)
    work = demo.root / "inference"
    work.mkdir(exist_ok=True)

    demo.step(f"pack the {w.name} edge student for the agents (edgefleet-agent pack-model)")
    variant = work / "variant"
    packed = subprocess.run(
        demo.agent_cmd(
            "pack-model", "--onnx", str(w.edge_onnx), "--preprocess", str(w.edge_preprocess),
            "--labels", str(w.labels), "--out", str(variant), "--name", w.edge_model,
        ),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if packed.returncode != 0:
        raise DemoFailed(f"pack-model failed: {packed.stderr.strip()}")
    demo.say(packed.stdout.strip())
    _serve_cloud_model(demo)

    with np.load(w.test_corrupted) as data:
        x, y = data["x"], data["y"]
    shares = dict(zip(names, np.array_split(np.arange(len(x)), len(names)), strict=True))
    demo.step(
        f"{len(names)} agents run it on {len(x)} corrupted Fashion-MNIST frames "
        f"({len(x) // len(names)} each, {FPS} frames/s), offloading the hardest "
        f"{float(OFFLOAD_BUDGET):.0%} to the teacher over mutual-TLS gRPC, telemetry over MQTT"
    )
    for name, idx in shares.items():
        np.save(work / f"{name}.npy", x[idx])
        demo.start_agent(
            name, "--model", str(variant), "--source", str(work / f"{name}.npy"),
            "--fps", FPS, "--offload-budget", OFFLOAD_BUDGET, "--telemetry-interval", "1",
            "--audit-rate", AUDIT_RATE, "--no-ota", "--results", str(work / f"{name}.jsonl"),
        )  # fmt: skip

    def all_reported() -> bool:
        rows = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}
        return all(rows.get(n, {}).get("frames") == len(shares[n]) for n in names)

    pacing_s = max(len(s) for s in shares.values()) / float(FPS)
    if not wait_for(all_reported, pacing_s + 60, interval_s=1.0):
        raise DemoFailed(f"not every frame showed up in fleet status within {pacing_s + 60:.0f} s")
    demo.say(demo.edgefleet("fleet", "status").rstrip())

    demo.step(f"the cloud teacher alone on the same {len(x)} frames (edgefleet.frames + ORT)")
    cloud = cloud_only_labels(x)
    demo.say(f"{w.cloud_onnx.name}: {float((cloud == y).mean()):.1%} correct")

    demo.step("the estimate vs the truth, from the labels")
    _compare(demo, names, shares, work, x, y, cloud)
    for name in names:  # back to plain presence for later stories
        demo.start_agent(name)


def _compare(
    demo: DemoRun,
    names: list[str],
    shares: dict[str, np.ndarray],
    work: Path,
    x: np.ndarray,
    y: np.ndarray,
    cloud: np.ndarray,
) -> None:
    """Per device: the fleet's estimate (which takes the cloud's answer as the label) against
    the cascade's agreement with the cloud model (what it estimates) and against the truth;
    then the fleet: edge only, cloud only, the cascade, its ratio to cloud only, offload rate."""
    rows = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}
    label = np.full(len(x), -1, np.int64)
    edge = np.full(len(x), -1, np.int64)
    by_cloud = np.zeros(len(x), bool)
    offloaded = np.zeros(len(x), bool)
    for name in names:
        idx = shares[name]
        a = Answers.read(work / f"{name}.jsonl", len(idx))
        label[idx], edge[idx], by_cloud[idx], offloaded[idx] = (
            a.label, a.edge_label, a.by_cloud, a.offloaded
        )  # fmt: skip
        judged = float((a.label == cloud[idx]).mean())  # accuracy with the cloud as the judge
        truth = float((a.label == y[idx]).mean())
        row = rows[name]
        low, high = row["accuracy_ci95"]
        inside = low <= judged <= high
        demo.say(
            f"{name}: estimated {row['accuracy']:.1%} [{low:.1%}, {high:.1%}] from "
            f"{row['agreement_pairs']} labelled pairs; agreement with the cloud model "
            f"{judged:.1%} ({'inside' if inside else 'OUTSIDE'} the interval); true {truth:.1%}; "
            f"offload rate {row['offload_rate']:.1%}, p95 {row['p95_latency_ms']:.2f} ms"
        )
        if not inside:
            raise DemoFailed(
                f"{name}: the cascade's agreement with the cloud model, {judged:.3f}, is outside "
                f"the estimate's interval [{low:.3f}, {high:.3f}]"
            )
    if (label < 0).any():
        raise DemoFailed(f"{int((label < 0).sum())} frames have no answer in the results")
    edge_acc = float((edge == y).mean())
    cloud_acc = float((cloud == y).mean())
    cascade_acc = float((label == y).mean())
    failed = int((offloaded & ~by_cloud).sum())
    demo.say(
        f"\nfleet, {len(y)} corrupted frames, against the labels:\n"
        f"  edge student alone   {edge_acc:6.1%}\n"
        f"  cloud teacher alone  {cloud_acc:6.1%}\n"
        f"  cascade              {cascade_acc:6.1%}  = {cascade_acc / cloud_acc:.3f} x cloud only, "
        f"with {float(by_cloud.mean()):.1%} of frames answered by the cloud"
        + (f" ({failed} offloads failed and kept the local answer)" if failed else "")
    )
    demo.say(
        "(the fleet's estimate takes the cloud's answer as the label, so it estimates agreement "
        "with the teacher; the truth sits below it by the teacher's own mistakes on offloaded "
        "frames)"
    )
