"""Story: the enrolled agents each run the variant of the Fashion-MNIST edge student that the
controller selected for their hardware profile (LiteRT or ONNX Runtime, fetched and verified
against the signed release metadata) on the corrupted test split (a share each), offload hard
frames to the controller's cloud teacher over mutual-TLS gRPC,
and `fleet status` estimates the accuracy of the cascade's final answers from edge/cloud
agreement, corrected for the teacher's own mistakes with the build's cloud table. The labels
then say what it really was, next to the edge model alone and the cloud model alone."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.demo.context import FASHION, DemoFailed, DemoRun, wait_for
from controller.demo.models import fetch_selected, signed_updater

AUDIT_RATE = "0.2"  # a larger audit sample than the 2% default, for a tighter interval
OFFLOAD_BUDGET = "0.25"  # the share of frames the workload was designed to offload
# Paced like a camera, at most FPS frames a second: the cloud model (milliseconds a frame on
# this machine) keeps up with every agent's hard and audit frames within the offload deadline.
# Unpaced, a share would arrive in a burst the cloud could not answer in time, and failed
# offloads would blur the cascade's accuracy. The pacing is an upper bound: an offloaded frame
# waits for the teacher's answer before the next frame, so agents measure fewer frames a second
# (the story prints what they measured).
FPS = "50"
WINDOW = "10m"  # every report of the story (fleet status defaults to the last 60 s)


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


def _fetch_variants(demo: DemoRun, names: list[str], work: Path) -> dict[str, Path]:
    """Per agent, a variant directory (variant.json + model file, what `edgefleet-agent run
    --model DIR` loads) holding the signed variant the controller selects for its profile
    now, after the build and the device benchmarks, with that variant's own preprocessing."""
    w = FASHION
    refs = sorted(
        (m["version"], f"{m['name']}:{m['version']}")
        for m in demo.edgefleet_json("model", "list")
        if m["name"] == w.edge_model
    )
    if not refs:
        raise DemoFailed(f"{w.edge_model} is not in the registry: the models story builds it")
    ref = refs[-1][1]
    profiles = {d["name"]: d["profile"] for d in demo.edgefleet_json("device", "list")}
    updater = signed_updater(demo, work / "tuf")
    dirs: dict[str, Path] = {}
    for name in names:
        profile = profiles[name]
        dirs[name] = work / f"{name}-variant"
        meta = fetch_selected(demo, updater, ref, profile, dirs[name])
        pre = meta.preprocessing
        demo.say(
            f"{name} ({profile}): {meta.variant_id}, runtime {meta.runtime} ({meta.precision}), "
            f"input {meta.input_dtype} {pre.layout} {pre.channels}x{pre.size[0]}x{pre.size[1]}, "
            f"{meta.size_bytes} bytes -> {dirs[name]}"
        )
    return dirs


def _print_fleet_status(devices: list[dict[str, Any]]) -> None:
    """The `fleet status` table of a ``fleet status --format json`` answer."""
    from controller.cli.fleet import HEADERS, table_rows
    from edgefleet.cli import print_table

    print_table(HEADERS, table_rows(devices, int(time.time() * 1000)))


def _fps(row: dict[str, Any]) -> str:
    fps = row.get("frames_per_second")
    return "-" if not row.get("frames") or fps is None else f"{fps:.1f} fps"


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

    demo.step(
        f"each agent gets the variant of {w.edge_model} selected for its hardware profile, "
        "verified against the signed release metadata"
    )
    variants = _fetch_variants(demo, names, work)
    _serve_cloud_model(demo)

    with np.load(w.test_corrupted) as data:
        x, y = data["x"], data["y"]
    shares = dict(zip(names, np.array_split(np.arange(len(x)), len(names)), strict=True))
    demo.step(
        f"{len(names)} agents run their variants on {len(x)} corrupted Fashion-MNIST frames "
        f"({len(x) // len(names)} each, paced at up to {FPS} frames/s), offloading the hardest "
        f"{float(OFFLOAD_BUDGET):.0%} to the teacher over mutual-TLS gRPC, telemetry over MQTT"
    )
    for name, idx in shares.items():
        np.save(work / f"{name}.npy", x[idx])
        demo.start_agent(
            name, "--model", str(variants[name]), "--source", str(work / f"{name}.npy"),
            "--fps", FPS, "--offload-budget", OFFLOAD_BUDGET, "--telemetry-interval", "1",
            "--audit-rate", AUDIT_RATE, "--no-ota", "--results", str(work / f"{name}.jsonl"),
        )  # fmt: skip

    seen: list[dict[str, Any]] = []  # the fleet status that first showed every frame

    def all_reported() -> bool:
        devices = demo.edgefleet_json("fleet", "status", "--window", WINDOW)["devices"]
        seen[:] = devices
        rows = {d["name"]: d for d in devices}
        return all(rows.get(n, {}).get("frames") == len(shares[n]) for n in names)

    pacing_s = max(len(s) for s in shares.values()) / float(FPS)
    if not wait_for(all_reported, pacing_s + 60, interval_s=1.0):
        raise DemoFailed(f"not every frame showed up in fleet status within {pacing_s + 60:.0f} s")
    _print_fleet_status(seen)
    rows = {d["name"]: d for d in seen}
    measured = ", ".join(f"{n} {_fps(rows[n])}" for n in names)
    demo.say(
        f"measured frames/s: {measured}; the pacing of {FPS} frames/s is an upper bound, as "
        "each offloaded frame waits for the teacher's answer before the next one"
    )

    demo.step(f"the cloud teacher alone on the same {len(x)} frames (edgefleet.frames + ORT)")
    cloud = cloud_only_labels(x)
    demo.say(f"{w.cloud_onnx.name}: {float((cloud == y).mean()):.1%} correct")

    demo.step("the fleet's estimate of the final answers' accuracy vs the truth, from the labels")
    _compare(demo, names, shares, work, x, y, cloud)
    for name in names:  # back to plain presence for later stories
        demo.start_agent(name)


def where_in(value: float, low: float, high: float) -> str:
    """Whether ``value`` lies in the interval [low, high], in words."""
    if value < low:
        return "OUTSIDE the interval (below it)"
    if value > high:
        return "OUTSIDE the interval (above it)"
    return "inside the interval"


def _compare(
    demo: DemoRun,
    names: list[str],
    shares: dict[str, np.ndarray],
    work: Path,
    x: np.ndarray,
    y: np.ndarray,
    cloud: np.ndarray,
) -> None:
    """Per device: the fleet's estimate of the final answers' accuracy against the truth (and,
    for comparison, against the cascade's agreement with the cloud model, what the estimate
    used to be); then the fleet: edge only, cloud only, the cascade, its ratio to cloud only,
    offload rate."""
    status = demo.edgefleet_json("fleet", "status", "--window", WINDOW)
    rows = {d["name"]: d for d in status["devices"]}
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
        inside = low <= truth <= high
        ev = row["accuracy_evidence"]
        demo.say(
            f"{name}: fleet estimate {row['accuracy']:.1%} [{low:.1%}, {high:.1%}] "
            f"({ev['method']}: {ev['audit_pairs']} audit + {ev['offload_pairs']} offload pairs, "
            f"the teacher's own mistakes corrected for with the build's cloud table; "
            f"CBPE {'-' if ev['cbpe'] is None else format(ev['cbpe'], '.1%')})\n"
            f"    true accuracy, from the labels:       {truth:.1%}, {where_in(truth, low, high)}\n"
            f"    agreement with the teacher, measured: {judged:.1%} (the old estimate's target)\n"
            f"    offload rate {row['offload_rate']:.1%}, p95 {row['p95_latency_ms']:.2f} ms"
        )
        if not inside:  # by design 1 window in 20; bench/bench_estimate.py measures how often
            demo.say("    (a 95% interval misses the truth about once in twenty windows)")
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
        "(the fleet's estimate does not count the teacher as right: its accuracy on the frames "
        "the student finds hard comes from the build's cloud-by-confidence table, and operator "
        "labels (`fleet frames`, `fleet label`) refine it)"
    )
