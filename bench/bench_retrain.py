"""The fleet closes the loop: edge accuracy and offload on a deployment shift, before and after
retraining from the fleet's own hard frames, measured in one run.

    .venv/bin/python bench/bench_retrain.py [--epochs 8] [--fleet-draws 5] [--threshold 0.9]

A real controller and real agent processes (`edgefleet-agent run`, mutual-TLS gRPC, MQTT,
OTA), driven through the operator CLI — the walk of controller/demo/retrain.py with the
bench's settings: the digits edge model v1 rolled out; the agents run a night-camera shift of
examples/digits (controller/demo/retrain_shift.py: a lifted grey floor, lost contrast, sensor
noise; the cloud model was trained on such degradations, the edge model was not) and offload
their unsure frames; an opt-in policy keeps those of the night devices (a day device's are
not kept); held-out frames of the same shift (other images, never stored or trained on) are
answered by the agents on v1; `model retrain --from-fleet` (calibration.npz as the original
training data), `model build`, a 50%/100% rollout gated on telemetry; the held-out frames
again on v2. Goals:

    goal retrain_edge_accuracy_gain    edge-only accuracy on the held-out shift, v2 - v1 >= 2 pp
    goal retrain_offload_for_goal      offload the cascade needs for 99% of cloud-only accuracy
                                       (least confident first), v2 < v1
    goal retrain_clean_accuracy_drop   v1 - v2 on clean validation frames <= 2 pp
    goal retrain_policy_opt_in         frames stored from devices outside the policy == 0
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.config import ControllerConfig  # noqa: E402
from controller.demo.context import DemoFailed, DemoRun  # noqa: E402
from controller.demo.retrain import LoopSettings, run_loop  # noqa: E402
from controller.demo.retrain_shift import DIGITS, CascadeFigures  # noqa: E402

GAIN_PP = 2.0
CLEAN_DROP_PP = 2.0


def goal(name: str, measured: str, op: str, target: str, ok: bool) -> None:
    print(f"goal {name}: {measured} (target {op} {target}) {'OK' if ok else 'MISSED'}", flush=True)


def clean_accuracy_v1() -> float:
    import numpy as np
    import onnxruntime as ort

    from edgefleet.frames import frames_tensor
    from edgefleet.modelmeta import Preprocessing

    pre = Preprocessing.from_file(DIGITS / "preprocess.json")
    with np.load(DIGITS / "validation.npz") as z:
        x, y = z["x"], z["y"]
    session = ort.InferenceSession(str(DIGITS / "edge.onnx"), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"input": frames_tensor(x, pre)})[0].argmax(1) == y).mean())


def need(f: CascadeFigures) -> str:
    return "never" if f.offload_for_goal is None else f"{f.offload_for_goal:.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fleet-draws", type=int, default=5, help="shifted copies per image")
    parser.add_argument("--held-draws", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.9, help="agents' offload threshold")
    parser.add_argument("--fps", type=float, default=40.0)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    demo = DemoRun(
        root=root,
        config=ControllerConfig(
            data_dir=root / "controller", grpc_host="127.0.0.1", grpc_port=0, device_port=0,
            mqtt_port=0, http_port=0, shutdown_grace_s=2.0,
        ),
    )  # fmt: skip
    settings = LoopSettings(
        fleet_draws=args.fleet_draws, held_draws=args.held_draws, epochs=args.epochs,
        fps=args.fps, threshold=args.threshold,
    )  # fmt: skip
    began = time.perf_counter()
    try:
        demo.start_controller()
        logging.getLogger("controller").setLevel(logging.ERROR)
        out = run_loop(demo, settings)
    except DemoFailed as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop_all()
        demo.stop_controller()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - began
    b, a, r = out.before, out.after, out.retrain
    held = b.frames
    print()
    agents, threshold = len(settings.night), settings.threshold
    print(f"shift: night camera on examples/digits; {held} held-out frames answered by "
          f"{agents} agents on each version; threshold {threshold:g}")  # fmt: skip
    print(f"stored: {out.stored} hard frames {out.stored_devices}; the day device offloaded "
          f"{out.offloaded_uncovered} (outside the policy)")  # fmt: skip
    print(f"retrain: {r['model']['ref']} from {r['started_from']} on {r['hard_frames']['frames']} "
          f"hard + {r['train_frames'] - r['hard_frames']['frames']} original frames, "
          f"{r['fit']['epochs']} epochs, {r['wall_seconds']:.1f} s")  # fmt: skip
    print(f"rollout of {out.v2}: {out.rollout['state']['phase']}")
    print(f"{'':26s}{out.v1:>18s} {out.v2:>18s}")
    rows = (
        ("edge-only accuracy", f"{b.edge_accuracy:.1%}", f"{a.edge_accuracy:.1%}"),
        ("cloud-only accuracy", f"{b.cloud_accuracy:.1%}", f"{a.cloud_accuracy:.1%}"),
        ("agents offloaded", f"{b.offloaded:.1%}", f"{a.offloaded:.1%}"),
        ("cascade (agents' answers)", f"{b.cascade_accuracy:.1%}", f"{a.cascade_accuracy:.1%}"),
        ("offload for 99% of cloud", need(b), need(a)),
    )
    for label, before, after in rows:
        print(f"  {label:24s}{before:>18s} {after:>18s}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out.seconds.items())
          + f"; whole run {wall:.0f} s")  # fmt: skip

    gain = (a.edge_accuracy - b.edge_accuracy) * 100
    goal("retrain_edge_accuracy_gain", f"{gain:+.1f} pp ({b.edge_accuracy:.1%} -> "
         f"{a.edge_accuracy:.1%})", ">=", f"{GAIN_PP:g} pp", gain >= GAIN_PP)  # fmt: skip
    nb = b.offload_for_goal if b.offload_for_goal is not None else 1.01
    na = a.offload_for_goal if a.offload_for_goal is not None else 1.01
    goal("retrain_offload_for_goal", f"{need(b)} -> {need(a)}", "lower", "than before", na < nb)
    clean_v1, clean_v2 = clean_accuracy_v1(), float(r["student_accuracy"])
    drop = (clean_v1 - clean_v2) * 100
    clean = f"{drop:+.1f} pp ({clean_v1:.1%} -> {clean_v2:.1%} on validation.npz, clean)"
    goal("retrain_clean_accuracy_drop", clean, "<=", f"{CLEAN_DROP_PP:g} pp", drop <= CLEAN_DROP_PP)
    outside = sum(n for d, n in out.stored_devices.items() if d not in settings.night)
    goal("retrain_policy_opt_in", f"{outside} frames of devices outside the policy stored",
         "==", "0", outside == 0)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
