"""Story: the enrolled agents run the digits edge model on the corrupted test split, offload
hard frames to the controller's cloud model, and `fleet status` estimates the cascade's
accuracy from edge/cloud agreement alone; the labels then say what it really was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from controller.demo.context import DemoFailed, DemoRun, wait_for

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
EDGE_MODEL = "digits-edge"  # the name the model registry maps to digits-cloud
AUDIT_RATE = "0.2"  # a larger audit sample than the 2% default, for a tighter interval


def _serve_cloud_model(demo: DemoRun) -> None:
    """Use the registry's cloud model when the models story registered one, else the file."""
    models = demo.controller.cloud_models
    if models.get(EDGE_MODEL) is not None:
        demo.say(f"cloud model for {EDGE_MODEL}: from the model registry")
        return
    from controller.services.offload import parse_cloud_model_spec

    models.add_spec(parse_cloud_model_spec(f"{EDGE_MODEL}={DIGITS / 'cloud.onnx'}"))
    demo.say(f"cloud model for {EDGE_MODEL}: {DIGITS / 'cloud.onnx'}")


def story(demo: DemoRun) -> None:
    needed = ("edge.onnx", "cloud.onnx", "test_corrupted.npz", "preprocess.json", "labels.txt")
    if not all((DIGITS / n).exists() for n in needed):
        raise DemoFailed(f"the digits reference model is missing in {DIGITS}")
    names = sorted(demo.agent_dirs)
    work = demo.root / "inference"
    work.mkdir(exist_ok=True)

    demo.step("pack the digits edge model for the agents (edgefleet-agent pack-model)")
    import subprocess

    variant = work / "variant"
    packed = subprocess.run(
        demo.agent_cmd(
            "pack-model", "--onnx", str(DIGITS / "edge.onnx"),
            "--preprocess", str(DIGITS / "preprocess.json"),
            "--labels", str(DIGITS / "labels.txt"), "--out", str(variant), "--name", EDGE_MODEL,
        ),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if packed.returncode != 0:
        raise DemoFailed(f"pack-model failed: {packed.stderr.strip()}")
    demo.say(packed.stdout.strip())
    _serve_cloud_model(demo)

    with np.load(DIGITS / "test_corrupted.npz") as data:
        x, y = data["x"], data["y"]
    shares = dict(zip(names, np.array_split(np.arange(len(x)), len(names)), strict=True))
    demo.step(
        f"{len(names)} agents run it on {len(x)} corrupted digits ({len(x) // len(names)} each), "
        "offloading hard frames over mutual-TLS gRPC, telemetry over MQTT"
    )
    for name, idx in shares.items():
        np.save(work / f"{name}.npy", x[idx])
        demo.start_agent(
            name, "--model", str(variant), "--source", str(work / f"{name}.npy"),
            "--telemetry-interval", "1", "--audit-rate", AUDIT_RATE, "--no-ota",
            "--results", str(work / f"{name}.jsonl"),
        )  # fmt: skip

    def all_reported() -> bool:
        rows = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}
        return all(rows.get(n, {}).get("frames") == len(shares[n]) for n in names)

    if not wait_for(all_reported, 60, interval_s=1.0):
        raise DemoFailed("not every frame showed up in fleet status within 60 s")
    demo.say(demo.edgefleet("fleet", "status").rstrip())

    demo.step("the estimate vs the truth: cascade accuracy from the labels")
    rows = {d["name"]: d for d in demo.edgefleet_json("fleet", "status")["devices"]}
    correct_all = 0
    for name in names:
        answers = [json.loads(line) for line in (work / f"{name}.jsonl").read_text().splitlines()]
        labels = y[shares[name]]
        by_index = {int(a["frame_id"].rsplit(":", 1)[1]): a["label"] for a in answers}
        correct = sum(by_index.get(i) == int(labels[i]) for i in range(len(labels)))
        correct_all += correct
        truth = correct / len(labels)
        row = rows[name]
        low, high = row["accuracy_ci95"]
        inside = low <= truth <= high
        demo.say(
            f"{name}: estimated {row['accuracy']:.1%} [{low:.1%}, {high:.1%}] from "
            f"{row['agreement_pairs']} labelled pairs; true {truth:.1%} "
            f"({'inside' if inside else 'OUTSIDE'} the interval); offload rate "
            f"{row['offload_rate']:.1%}, p95 {row['p95_latency_ms']:.1f} ms"
        )
        if not inside:
            raise DemoFailed(f"{name}: true accuracy {truth:.3f} outside [{low:.3f}, {high:.3f}]")
    demo.say(f"fleet: true cascade accuracy {correct_all / len(y):.1%} on {len(y)} frames")
    for name in names:  # back to plain presence for later stories
        demo.start_agent(name)
