"""Story: the fleet closes the loop. Agents run a digits edge model through a night-camera
shift (controller/demo/retrain_shift.py) on which it is weak and its cloud model is not; an
opt-in hard-example policy (night devices only) keeps the frames they offload with the cloud's
answers; `model retrain --from-fleet` distils the next version from the cloud model on those
frames mixed with the original training data, starting from the current version; it is built
and rolled out through a staged, gated rollout; the agents then run held-out frames of the
same shift (never offloaded to the store, never trained on), before and after.

``run_loop`` is the whole walk (the story runs it with short epochs, bench/bench_retrain.py
with its own settings); the story prints what an operator sees on the way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.cli.hard_examples import print_retrain_summary
from controller.demo.context import DemoFailed, DemoRun, wait_for
from controller.demo.devices import enroll_device
from controller.demo.retrain_shift import (
    DIGITS,
    CascadeFigures,
    ShiftData,
    cloud_labels,
    figures,
)

MODEL = "digits-fleet"
CLOUD = "digits-fleet-cloud"
RING = "retrain"
OFFLOAD_DEADLINE_S = 2.0  # a loaded 2-core machine: a hard frame that misses it is not kept
GATES = (  # in-process timing noise aside (see controller/demo/rollouts.py), a real gate set
    "agreement >= baseline - 0.01",
    "offload_rate <= baseline + 0.05",
    "error_rate <= 0.01",
    "p95_latency <= baseline + 5",
)


@dataclass(frozen=True)
class LoopSettings:
    night: tuple[str, ...] = ("night-1", "night-2")  # covered by the policy (site=night)
    day: str = "day-1"  # site=day: runs the shift too, its frames are not the policy's
    fleet_draws: int = 3  # shifted copies of each fleet image (600 frames at 3)
    held_draws: int = 3  # of each held-out image (300 frames at 3)
    epochs: int = 6
    fps: float = 40.0
    threshold: float = 0.8  # the agents' offload threshold (calibrated confidence)
    soak: str = "3s"


@dataclass(frozen=True)
class LoopOutcome:
    before: CascadeFigures
    after: CascadeFigures
    stored: int  # hard frames the policy kept
    stored_devices: dict[str, int]
    offloaded_uncovered: int  # frames the day device offloaded (none may be stored)
    retrain: dict[str, Any]  # the RetrainModel report
    rollout: dict[str, Any]  # `rollout status --format json` at the end
    v1: str
    v2: str
    seconds: dict[str, float]


def _answers(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start_frames(
    demo: DemoRun, work: Path, tag: str, shares: dict[str, np.ndarray], s: LoopSettings
) -> dict[str, Path]:
    """Each named agent (its own process) runs its share of frames once; their results files."""
    results = {}
    for name, frames in shares.items():
        np.save(work / f"{tag}-{name}.npy", frames)
        results[name] = work / f"{tag}-{name}.jsonl"
        results[name].unlink(missing_ok=True)
        demo.start_agent(
            name, "--source", str(work / f"{tag}-{name}.npy"), "--fps", str(s.fps),
            "--offload-threshold", str(s.threshold), "--results", str(results[name]),
            "--ota-poll", "1", "--ota-probation", "1", "--telemetry-interval", "1",
            "--offload-deadline", str(OFFLOAD_DEADLINE_S),
        )  # fmt: skip
    return results


def _wait_frames(
    results: dict[str, Path], shares: dict[str, np.ndarray], s: LoopSettings, tag: str
) -> dict[str, list[dict[str, Any]]]:
    total = sum(len(f) for f in shares.values())

    def done() -> bool:
        return all(len(_answers(results[n])) >= len(f) for n, f in shares.items())

    if not wait_for(done, total / s.fps + 120, 0.5):
        counts = {n: len(_answers(results[n])) for n in shares}
        raise DemoFailed(f"the agents did not answer their {tag} frames in time: {counts}")
    return {name: _answers(path) for name, path in results.items()}


def _run_frames(
    demo: DemoRun, work: Path, tag: str, shares: dict[str, np.ndarray], s: LoopSettings
) -> dict[str, list[dict[str, Any]]]:
    return _wait_frames(_start_frames(demo, work, tag, shares, s), shares, s, tag)


def _add_models(demo: DemoRun) -> str:
    out = demo.edgefleet(
        "model", "add", MODEL, "--onnx", str(DIGITS / "edge.onnx"),
        "--validation", str(DIGITS / "validation.npz"),
        "--calibration", str(DIGITS / "calibration.npz"),
        "--labels", str(DIGITS / "labels.txt"), "--preprocess", str(DIGITS / "preprocess.json"),
    )  # fmt: skip
    v1 = out.strip().splitlines()[-1].split()[-1]
    demo.edgefleet(
        "model", "add", CLOUD, "--onnx", str(DIGITS / "cloud.onnx"), "--cloud-for", MODEL,
        "--validation", str(DIGITS / "validation.npz"),
        "--labels", str(DIGITS / "labels.txt"), "--preprocess", str(DIGITS / "preprocess.json"),
    )  # fmt: skip
    _build(demo, v1)
    return v1


def _build(demo: DemoRun, ref: str) -> None:
    demo.edgefleet("model", "build", ref, "--profiles", "all", "--no-tflite",
                   "--variants", "onnx-fp32", "--runs", "5")  # fmt: skip


def _rollout(demo: DemoRun, ref: str, stages: str, gates: tuple[str, ...], soak: str) -> str:
    args = ["rollout", "start", ref, "--target", f"ring={RING}", "--stages", stages,
            "--soak", soak, "--min-samples", "30"]  # fmt: skip
    for g in gates:
        args += ["--gate", g]
    rid = str(demo.edgefleet_json(*args)["id"])
    demo.say(f"$ edgefleet {' '.join(args)}")
    return rid


def _wait_rollout(demo: DemoRun, rid: str, timeout_s: float) -> dict[str, Any]:
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        shown: dict[str, Any] = demo.edgefleet_json("rollout", "status", rid)
        state = shown["state"]
        where = f"{state['phase']} at stage {state['stage_index'] + 1}"
        if where != last:
            demo.say(f"  rollout {rid}: {where}")
            last = where
        if state["phase"] in ("completed", "rolled_back", "aborted", "halted"):
            return shown
        time.sleep(1.0)
    raise DemoFailed(f"rollout {rid} did not end in {timeout_s:.0f} s")


def _warm_cloud_model(demo: DemoRun) -> None:
    """Load the cloud model and let its serving plan be measured before the agents offload:
    the measurement takes the CPU for a few seconds, and on a loaded machine the first hard
    frames would miss their deadline (answered locally, so never labelled or kept)."""
    served = demo.controller.cloud_models
    if served.get(MODEL) is None:
        raise DemoFailed(f"the controller serves no cloud model for {MODEL}")
    if not wait_for(lambda: _plan_source(demo) not in ("", "pending"), 120, 0.5):
        raise DemoFailed(f"the serving plan of {CLOUD} was not measured in 120 s")
    plan = demo.controller.cloud_models.plan_for(f"{CLOUD}:1")
    demo.say(f"cloud model {CLOUD}:1 loaded; serving plan: {plan.summary() if plan else '-'}")


def _plan_source(demo: DemoRun) -> str:
    plan = demo.controller.cloud_models.plan_for(f"{CLOUD}:1")
    return str(plan.source) if plan is not None else ""


def _split(x: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {n: part for n, part in zip(names, np.array_split(x, len(names)), strict=True)}


def _indexed(answers: dict[str, list[dict[str, Any]]], names: tuple[str, ...],
             sizes: list[int]) -> list[dict[str, Any]]:  # fmt: skip
    """Every agent's answers with frame ids renumbered into the whole held-out set."""
    out, offset = [], 0
    for name, size in zip(names, sizes, strict=True):
        for a in answers[name]:
            i = int(str(a["frame_id"]).rsplit(":", 1)[1])
            out.append({**a, "frame_id": f"held:{offset + i}"})
        offset += size
    return out


def run_loop(demo: DemoRun, s: LoopSettings) -> LoopOutcome:
    work = demo.root / "retrain"
    work.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}
    began = time.monotonic()
    data = ShiftData.digits(s.fleet_draws, s.held_draws)
    held_cloud = cloud_labels(data.held_x)
    everyone = (*s.night, s.day)

    demo.step(f"the fleet loop: {MODEL} (examples/digits edge model) and its cloud model "
              f"{CLOUD}; build v1 (ONNX fp32 only); agents {', '.join(everyone)}")  # fmt: skip
    v1 = _add_models(demo)
    for name in everyone:
        if name not in demo.agent_dirs:
            site = "night" if name in s.night else "day"
            enroll_device(demo, name, {"site": site, "ring": RING})
    seconds["setup"] = time.monotonic() - began

    _warm_cloud_model(demo)
    demo.step("opt in: keep the offloaded frames of the night devices only (policy per model)")
    demo.say(demo.edgefleet("model", "hard-examples", MODEL).rstrip())
    enable = ("--enable", "--device-label", "site=night", "--max-mb", "20", "--retention", "7d")
    demo.say(demo.edgefleet("model", "hard-examples", MODEL, *enable).rstrip())

    t = time.monotonic()
    demo.step(
        f"roll out {v1}; the agents run the night-camera shift: {len(data.fleet_x)} "
        f"frames at {s.fps:g} frames/s, offloading below confidence {s.threshold:g}"
    )
    shares = _split(data.fleet_x, everyone)
    results = _start_frames(demo, work, "fleet", shares, s)  # they wait for a first model
    rid = _rollout(demo, v1, "100%", ("error_rate <= 0.01",), "1s")
    answered = _wait_frames(results, shares, s, "fleet")
    if _wait_rollout(demo, rid, 120)["state"]["phase"] != "completed":
        raise DemoFailed(f"the rollout of {v1} did not complete")
    hard = demo.controller.hard_examples
    hard.flush(10.0)
    stored = hard.frames(MODEL)
    by_device: dict[str, int] = {}
    for f in stored:
        by_device[f.device_id] = by_device.get(f.device_id, 0) + 1
    ids = {d["name"]: d["device_id"] for d in demo.edgefleet_json("device", "list")}
    day_offloads = sum(1 for a in answered[s.day] if a["source"] == "cloud")
    if ids[s.day] in by_device:
        raise DemoFailed(f"frames of {s.day} were stored though the policy leaves it out")
    demo.say(demo.edgefleet("model", "hard-examples", MODEL).rstrip())
    demo.say(f"stored per device: { {n: by_device.get(ids[n], 0) for n in everyone} } "
             f"({s.day} offloaded {day_offloads}: not the policy's, none kept)")  # fmt: skip
    seconds["fleet"] = time.monotonic() - t

    t = time.monotonic()
    demo.step("close the policy; the night agents run held-out frames of the same shift on "
              f"{v1} (never stored, never trained on)")  # fmt: skip
    demo.edgefleet("model", "hard-examples", MODEL, "--disable")
    demo.stop_agent(s.day)  # back for the rollout below
    held = _split(data.held_x, s.night)
    sizes = [len(v) for v in held.values()]
    before_answers = _run_frames(demo, work, "before", held, s)
    before = figures(_indexed(before_answers, s.night, sizes), data.held_y, held_cloud)
    demo.say(f"{v1} on the held-out shift: {before.line()}")
    seconds["before"] = time.monotonic() - t

    t = time.monotonic()
    demo.step(
        f"`model retrain {MODEL} --from-fleet`: distil v2 from {CLOUD} on the stored hard "
        f"frames + the original training data ({s.epochs} epochs: a short run for the demo)"
    )
    data_file = str(DIGITS / "calibration.npz")
    args = ("model", "retrain", MODEL, "--from-fleet", "--data", data_file,
            "--epochs", str(s.epochs), "--batch-size", "64")  # fmt: skip
    demo.say(f"$ edgefleet {' '.join(args[:4])} --data calibration.npz --epochs {s.epochs}")
    report = demo.edgefleet_json(*args)
    print_retrain_summary(report)  # what the command prints without --format json
    v2 = str(report["model"]["ref"])
    seconds["retrain"] = time.monotonic() - t

    t = time.monotonic()
    demo.step(f"build {v2} and roll it out: 50% -> 100%, soaked and gated on telemetry while "
              "the agents run the shift")  # fmt: skip
    _build(demo, v2)
    loops = _split(data.fleet_x, everyone)
    for name, frames in loops.items():
        np.save(work / f"traffic-{name}.npy", frames)
        demo.start_agent(
            name, "--source", str(work / f"traffic-{name}.npy"), "--loop", "--fps", str(s.fps),
            "--offload-threshold", str(s.threshold), "--ota-poll", "1", "--ota-probation", "1",
            "--telemetry-interval", "1", "--offload-deadline", str(OFFLOAD_DEADLINE_S),
        )  # fmt: skip
    time.sleep(4.0)  # the baseline cohort's telemetry on v1
    rid = _rollout(demo, v2, "50%,100%", GATES, s.soak)
    rollout = _wait_rollout(demo, rid, 240)
    demo.say(demo.edgefleet("rollout", "status", rid).rstrip())
    if rollout["state"]["phase"] != "completed":
        raise DemoFailed(f"the rollout of {v2} ended {rollout['state']['phase']}")
    seconds["rollout"] = time.monotonic() - t

    t = time.monotonic()
    demo.step(f"the held-out frames again, on {v2}")
    demo.stop_agent(s.day)  # its part is done
    after_answers = _run_frames(demo, work, "after", held, s)
    variants = {a["variant_id"] for rows in after_answers.values() for a in rows}
    if any(f":{v2.split(':')[1]}:" not in v for v in variants):
        raise DemoFailed(f"the agents ran {sorted(variants)}, not {v2}")
    after = figures(_indexed(after_answers, s.night, sizes), data.held_y, held_cloud)
    demo.say(f"{v2} on the held-out shift: {after.line()}")
    seconds["after"] = time.monotonic() - t
    for name in everyone:
        demo.stop_agent(name)
    return LoopOutcome(
        before, after, len(stored), {n: by_device.get(ids[n], 0) for n in everyone},
        day_offloads, report, rollout, v1, v2, seconds,
    )  # fmt: skip


def story(demo: DemoRun) -> None:
    outcome = run_loop(demo, LoopSettings())
    b, a = outcome.before, outcome.after
    demo.step("before and after, on the held-out frames of the shift")
    demo.say(
        f"edge-only accuracy {b.edge_accuracy:.1%} -> {a.edge_accuracy:.1%} "
        f"({(a.edge_accuracy - b.edge_accuracy) * 100:+.1f} pp; cloud only {a.cloud_accuracy:.1%})"
    )
    need_b = "never" if b.offload_for_goal is None else f"{b.offload_for_goal:.0%}"
    need_a = "never" if a.offload_for_goal is None else f"{a.offload_for_goal:.0%}"
    demo.say(f"offload the cascade needs for 99% of cloud-only accuracy: {need_b} -> {need_a}; "
             f"the agents offloaded {b.offloaded:.0%} -> {a.offloaded:.0%} at threshold "
             f"{LoopSettings().threshold:g}")  # fmt: skip
    if a.edge_accuracy <= b.edge_accuracy:
        raise DemoFailed("retraining on the fleet's hard frames did not raise edge accuracy")
