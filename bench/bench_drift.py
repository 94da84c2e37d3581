"""Drift benchmark on the fashion workload: alert latency after a shift that makes the edge
model confidently wrong, false alerts on a clean run, and the cascade's accuracy on the shift
with and without drift-aware offload, side by side in one run.

    .venv/bin/python bench/bench_drift.py [--clean-minutes 10] [--fps 20]

Simulated time, real parts: the frames are examples/fashion's test set (clean) and the same
frames inverted (dark garment on a light background: the shift), answered by the real edge
and cloud models (ONNX Runtime, outputs computed once up front); the device side is the
agent's own BudgetPolicy (20% budget), AuditSampler (2%) and TelemetryAggregator, its reports
decoded by the controller's telemetry decode into the real TelemetryStore (SQLite) every 10 s;
the controller side is the real FleetMonitor (drift scores, alert rules, AlertLog, offload
budgets) evaluated every 5 s, with the drift-aware budget delivered as the desired-state JSON
the agent parses (agent.inference.drift). Only the clock is simulated (one fake clock for
every part), so a 10-minute clean run takes seconds; there is no network and no broker here
(those paths are tested in tests/integration/test_monitoring_alerts.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fashion_workload import EDGE_NAME, Workload, add_workload_arguments  # noqa: E402
from controller.monitoring.drift import Baseline  # noqa: E402

DEVICE = "dev-bench"
VARIANT = f"{EDGE_NAME}:1:onnx-fp32"
REPORT_S, EVALUATE_S = 10.0, 5.0


@dataclass
class Outputs:
    """Per frame: edge prediction and calibrated confidence, cloud prediction, the label."""

    edge: np.ndarray
    confidence: np.ndarray
    cloud: np.ndarray
    y: np.ndarray


def _logits(model: Path, pre_file: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from controller.optimize.source import load_preprocessing
    from edgefleet.frames import frames_tensor

    pre = load_preprocessing(pre_file)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    t = frames_tensor(x, pre)
    return np.concatenate(
        [session.run(None, {name: t[i : i + 200]})[0] for i in range(0, len(t), 200)]
    )


def outputs(w: Workload, x: np.ndarray, y: np.ndarray, temperature: float) -> Outputs:
    from edgefleet.confidence import calibrated_probabilities

    edge = _logits(w.edge_model, w.edge_preprocess, x)
    cloud = _logits(w.cloud_model, w.cloud_preprocess, x)
    conf = np.array([calibrated_probabilities(r, temperature).max() for r in edge])
    return Outputs(edge.argmax(1), conf, cloud.argmax(1), y)


@dataclass
class FakeDevice:
    """What the monitor reads of a registered device."""

    device_id: str = DEVICE
    name: str = "cam-bench"
    state: str = "enrolled"
    online: bool = True
    last_seen_ms: int = 0


@dataclass
class Run:
    alerts: list[tuple[float, str]]  # (seconds since start, rule) of every alert fired
    correct: np.ndarray  # per frame: the cascade's answer was right
    cloud_correct: np.ndarray
    offloaded: np.ndarray
    times: np.ndarray  # per frame, seconds since start
    budget_changes: list[tuple[float, float]]  # (seconds, granted frames/s)
    max_psi: float  # over every evaluation
    max_gap: float  # expected agreement - the observed agreement's upper bound, largest


def simulate(
    schedule: Callable[[int], tuple[Outputs, int]],
    frames: int,
    fps: float,
    baseline: Baseline,
    ceiling_fps: float,
    shift_target: float = 0.0,
) -> Run:
    """``schedule(i)`` gives frame i's outputs and index; everything else is the product's."""
    from agent.inference.drift import drift_budget_follows
    from agent.inference.policy import AuditSampler, BudgetPolicy
    from agent.telemetry import TelemetryAggregator
    from controller.monitoring.alerts import AlertLog
    from controller.monitoring.events import EventLog
    from controller.monitoring.monitor import FleetMonitor, MonitorConfig
    from controller.monitoring.offload_budget import OffloadBudgets
    from controller.mqtt.telemetry_decode import sample_from_report
    from controller.services.telemetry import TelemetryStore
    from controller.store.db import Database

    start = time.time()
    now = [start]
    clock = lambda: now[0]  # noqa: E731
    policy = BudgetPolicy(target_fraction=0.2, clock=clock, shift_target=shift_target)
    policy.set_baseline(baseline.counts, baseline.bounds)  # as the agent does from the release
    audit = AuditSampler(0.02, seed=7)
    aggregator = TelemetryAggregator(DEVICE, EDGE_NAME, VARIANT, clock=clock,
                                     process_stats=lambda: (0, 0.0))  # fmt: skip
    follow = drift_budget_follows(policy)
    changes: list[tuple[float, float]] = []

    class Desired:
        def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None):
            changes.append((now[0] - start, float(json.loads(payload)["offload_max_fps"])))
            follow(payload)

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        db.migrate()
        store = TelemetryStore(db, clock=clock)
        store.start()
        alerts = AlertLog(db, clock=clock)
        budgets = OffloadBudgets(Desired(), ceiling_fps, [EventLog(db, clock=clock).record])
        device = FakeDevice()
        monitor = FleetMonitor(
            MonitorConfig(interval_s=EVALUATE_S, window_s=60.0),
            devices=lambda: [device],  # type: ignore[list-item]
            telemetry=store,
            rollouts=lambda: [],
            baselines={VARIANT: baseline},  # type: ignore[arg-type]
            alerts=alerts,
            budgets=budgets if ceiling_fps > 0 else None,
            clock=clock,
        )
        fired: list[tuple[float, str]] = []
        monitor.alert_listeners.append(
            lambda status, a: fired.append((now[0] - start, a.rule)) if status == "firing" else None
        )
        correct = np.zeros(frames, bool)
        cloud_ok = np.zeros(frames, bool)
        offloaded = np.zeros(frames, bool)
        times = np.zeros(frames)
        next_report, next_eval = REPORT_S, EVALUATE_S
        max_psi, max_gap = 0.0, float("-inf")
        for i in range(frames):
            now[0] = start + i / fps
            times[i] = i / fps
            out, k = schedule(i)
            edge, conf, cloud, y = (
                int(out.edge[k]),
                float(out.confidence[k]),
                int(out.cloud[k]),
                int(out.y[k]),
            )
            hard = policy.should_offload(conf)
            audited = not hard and audit.should_audit()
            if hard or audited:
                aggregator.record_pair(edge, cloud, audit=audited)
            aggregator.record_frame(1.0, 1.0, conf, offloaded=hard, audited=audited)
            answer = cloud if hard else edge
            correct[i], cloud_ok[i], offloaded[i] = answer == y, cloud == y, hard
            device.last_seen_ms = int(now[0] * 1000)
            if times[i] >= next_report:
                next_report += REPORT_S
                sample = sample_from_report(aggregator.report(), DEVICE, int(now[0] * 1000))
                store.submit(sample)
                store.flush(10)
            if times[i] >= next_eval:
                next_eval += EVALUATE_S
                monitor.evaluate_once()
                score = monitor.device_drift().get(DEVICE)
                if score is not None and score.confidence_frames >= 300:
                    max_psi = max(max_psi, score.psi or 0.0)
                expected = score.expected_agreement if score is not None else None
                if score is not None and expected is not None and score.agreement_pairs >= 20:
                    max_gap = max(max_gap, expected - score.agreement_high)
        store.stop()
        db.close()
    return Run(fired, correct, cloud_ok, offloaded, times, changes, max_psi, max_gap)


def goal(name: str, measured: float, op: str, target: float, unit: str = "") -> None:
    ok = measured <= target if op == "<=" else measured >= target
    print(f"goal {name}: {measured:.3g}{unit} (target {op} {target:g}{unit}) "
          f"{'OK' if ok else 'MISSED'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--clean-minutes", type=float, default=10.0)
    parser.add_argument(
        "--before-s", type=float, default=60.0, help="clean seconds before the shift"
    )
    parser.add_argument("--shift-s", type=float, default=240.0, help="seconds of shifted frames")
    parser.add_argument("--ceiling-fps", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # alerts are printed below, not logged as they fire
    w = Workload.from_args(args)
    if missing := w.missing():
        sys.exit(f"missing workload files: {', '.join(map(str, missing))}")

    from controller.optimize.evaluate import fit_temperature
    from edgefleet.confidence import validation_histograms
    from edgefleet.histograms import CONFIDENCE_BOUNDS

    t0 = time.perf_counter()
    vx, vy = w.split("validation")
    v_logits = _logits(w.edge_model, w.edge_preprocess, vx)
    temperature = fit_temperature(v_logits, vy)
    hist = validation_histograms(v_logits, vy, CONFIDENCE_BOUNDS, temperature)["max_softmax"]
    baseline = Baseline.from_dict(hist)  # what the build stores for the variant
    tx, ty = w.split("test")
    clean = outputs(w, tx, ty, temperature)
    inverted = outputs(w, (255 - tx).astype(np.uint8), ty, temperature)
    threshold = float(np.quantile(clean.confidence, 0.2))  # the 20% budget's threshold, clean
    print(f"models: {time.perf_counter() - t0:.1f} s; temperature {temperature:.2f}")
    # the confidently wrong shift: the inverted frames the edge model answers wrong with a
    # confidence above the clean threshold (a budget keeps them local)
    keep = (inverted.edge != ty) & (inverted.confidence >= threshold)
    confident = Outputs(inverted.edge[keep], inverted.confidence[keep], inverted.cloud[keep],
                        ty[keep])  # fmt: skip
    for name, o in (("clean", clean), ("inverted", inverted), ("confidently wrong", confident)):
        wrong = float(np.mean((o.edge != o.y) & (o.confidence >= threshold)))
        print(f"{name:18s} {len(o.y):5d} frames: edge {np.mean(o.edge == o.y):.3f}, cloud "
              f"{np.mean(o.cloud == o.y):.3f}, mean confidence {o.confidence.mean():.2f}, "
              f"wrong above the clean offload threshold {threshold:.2f}: {wrong:.0%}")  # fmt: skip

    t1 = time.perf_counter()
    clean_frames = int(args.clean_minutes * 60 * args.fps)
    clean_run = simulate(
        lambda i: (clean, i % len(clean.y)), clean_frames, args.fps, baseline, args.ceiling_fps
    )
    print(f"clean run: {clean_frames} frames, alerts {clean_run.alerts or 'none'} "
          f"({time.perf_counter() - t1:.1f} s); largest PSI {clean_run.max_psi:.3f} (fires at "
          f"0.25), largest agreement gap {clean_run.max_gap:.3f} (fires above 0.15)")  # fmt: skip
    results = {name: shift_runs(args, clean, o, baseline) for name, o in
               (("inverted", inverted), ("confidently wrong", confident))}  # fmt: skip
    for name, (latency, _) in results.items():
        goal(f"alert latency after the {name} shift at {args.fps:g} fps", latency, "<=", 60, " s")
    goal(f"false alerts in a {args.clean_minutes:g}-minute clean run (simulated time)",
         len(clean_run.alerts), "<=", 0)  # fmt: skip
    for name, (_, ratio) in results.items():
        goal(f"cascade accuracy on the {name} shift with drift-aware offload / cloud-only",
             ratio, ">=", 0.9)  # fmt: skip


def shift_runs(
    args: argparse.Namespace, clean: Outputs, shifted: Outputs, baseline: Baseline
) -> tuple[float, float]:
    """Clean frames, then the shift: without, with drift-aware offload, and with the agent's
    own shift check only. Returns the alert latency and the with/cloud-only accuracy ratio."""
    before = int(args.before_s * args.fps)
    frames = before + int(args.shift_s * args.fps)

    def schedule(i: int) -> tuple[Outputs, int]:
        o = clean if i < before else shifted
        return o, i % len(o.y)

    without = simulate(schedule, frames, args.fps, baseline, 0.0)
    with_ = simulate(schedule, frames, args.fps, baseline, args.ceiling_fps)
    agent_own = simulate(schedule, frames, args.fps, baseline, 0.0, shift_target=1.0)
    shift_at = args.before_s
    after = [(t, r) for t, r in with_.alerts if t >= shift_at]
    latency = (after[0][0] - shift_at) if after else float("inf")
    print(
        f"-- {len(shifted.y)}-frame shift: alerts {sorted({r for _, r in after})}, first "
        f"{latency:.0f} s after it; budget changes (s, frames/s) {with_.budget_changes}"
    )

    def acc(run: Run, since: float) -> tuple[float, float, float]:
        m = run.times >= since
        return (
            float(run.correct[m].mean()),
            float(run.cloud_correct[m].mean()),
            float(run.offloaded[m].mean()),
        )

    steady = shift_at + 60.0  # a minute after the shift: detected, budget raised
    runs = (("without drift-aware offload", without), ("with drift-aware offload", with_),
            ("agent's own shift check only (target 1.0)", agent_own))  # fmt: skip
    for label, run in runs:
        a_all = acc(run, shift_at)[0]
        a, cloud, off = acc(run, steady)
        print(f"   {label:42s} cascade {a_all:.3f} over the shift, {a:.3f} from +60 s "
              f"(offload {off:.2f}); cloud-only {cloud:.3f}; ratio {a / cloud:.2f}")  # fmt: skip
    a_with, cloud_only, _ = acc(with_, steady)
    return latency, a_with / cloud_only


if __name__ == "__main__":
    main()
