"""The deployment shift of the fleet-retrain story and bench, and the numbers they report.

The shift is a night camera on examples/digits: the frame's black floor lifted to a grey
30..60 levels, the digit's contrast cut to 45..70%, and sensor noise of sigma 30..45 levels,
each drawn per frame (seeded). The digits cloud model was trained with exactly these kinds of
degradation (background lift, lost contrast, noise up to sigma 80: examples/digits/README.md);
the edge model saw only weak ones, so the teacher is far better on it (measured when this was
written, on the 500 clean frames of validation + calibration: edge 69%, cloud 99.6%).

Frames: the fleet sees the shifted copies of validation.npz frames 0..199 (several draws);
the held-out evaluation uses shifted copies of frames 200..299, never offloaded, stored or
trained on. The original training data for the retrain is calibration.npz (200 clean frames:
the training split itself is not committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
FLEET_IMAGES = 200  # validation frames 0..199 feed the fleet; 200.. are held out
CASCADE_GOAL = 0.99  # the cascade's accuracy goal, as a share of cloud-only accuracy


def night_camera(x: np.ndarray, seed: int) -> np.ndarray:
    """The shift on uint8 frames N x H x W: lifted floor, lost contrast, sensor noise."""
    rng = np.random.default_rng(seed)
    n = len(x)
    f = x.astype(np.float32)
    floor = rng.uniform(30, 60, (n, 1, 1))
    contrast = rng.uniform(0.45, 0.7, (n, 1, 1))
    noise = rng.normal(0.0, 1.0, f.shape) * rng.uniform(30, 45, (n, 1, 1))
    return np.clip(np.rint(floor + contrast * f + noise), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ShiftData:
    fleet_x: np.ndarray  # what the devices see (and offload from) before retraining
    fleet_y: np.ndarray  # true labels (reporting only: the loop uses the cloud's)
    held_x: np.ndarray  # held-out frames of the same shift
    held_y: np.ndarray

    @classmethod
    def digits(cls, fleet_draws: int = 3, held_draws: int = 3) -> ShiftData:
        with np.load(DIGITS / "validation.npz") as z:
            x, y = z["x"], z["y"]
        fleet = [night_camera(x[:FLEET_IMAGES], seed=100 + d) for d in range(fleet_draws)]
        held = [night_camera(x[FLEET_IMAGES:], seed=200 + d) for d in range(held_draws)]
        order = np.random.default_rng(7).permutation(FLEET_IMAGES * fleet_draws)
        return cls(
            np.concatenate(fleet)[order],
            np.tile(y[:FLEET_IMAGES], fleet_draws)[order],
            np.concatenate(held),
            np.tile(y[FLEET_IMAGES:], held_draws),
        )


def cloud_labels(x: np.ndarray) -> np.ndarray:
    """The digits cloud model's answers (ONNX Runtime), the same model the controller serves."""
    import onnxruntime as ort

    from edgefleet.frames import frames_tensor
    from edgefleet.modelmeta import Preprocessing

    pre = Preprocessing.from_file(DIGITS / "preprocess.json")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(DIGITS / "cloud.onnx"), options, providers=["CPUExecutionProvider"]
    )
    out = [session.run(None, {"input": frames_tensor(x[i : i + 256], pre)})[0]
           for i in range(0, len(x), 256)]  # fmt: skip
    return np.concatenate(out).argmax(1)


@dataclass(frozen=True)
class CascadeFigures:
    frames: int
    edge_accuracy: float  # the edge model's own answers, nothing offloaded
    cloud_accuracy: float
    offloaded: float  # share the agents offloaded at their threshold
    cascade_accuracy: float  # the agents' final answers
    offload_for_goal: float | None  # least share (least confident first) reaching the goal

    def line(self) -> str:
        need = "never" if self.offload_for_goal is None else f"{self.offload_for_goal:.0%}"
        return (
            f"edge only {self.edge_accuracy:.1%}, cloud only {self.cloud_accuracy:.1%}; agents "
            f"offloaded {self.offloaded:.0%} for a cascade of {self.cascade_accuracy:.1%}; "
            f"offload needed for {CASCADE_GOAL:.0%} of cloud-only: {need}"
        )


def offload_for_goal(
    confidence: np.ndarray, edge_ok: np.ndarray, cloud_ok: np.ndarray, goal: float = CASCADE_GOAL
) -> float | None:
    """The least share of frames, offloaded least confident first, for which the cascade's
    accuracy reaches ``goal`` x cloud-only (None: not even offloading everything)."""
    n = len(confidence)
    target = goal * float(cloud_ok.mean())
    order = np.argsort(confidence, kind="stable")
    # accuracy with the k least confident offloaded: edge right on the rest + cloud right on k
    gain = np.concatenate([[0], np.cumsum(cloud_ok[order].astype(int) - edge_ok[order])])
    accuracy = (edge_ok.sum() + gain) / n
    hits = np.flatnonzero(accuracy >= target - 1e-12)
    return float(hits[0] / n) if len(hits) else None


def figures(answers: list[dict[str, object]], y: np.ndarray, cloud: np.ndarray) -> CascadeFigures:
    """From the agents' answers (``--results`` lines, frame id SOURCE:INDEX, any order)."""
    rows = sorted(answers, key=lambda a: int(str(a["frame_id"]).rsplit(":", 1)[1]))
    index = np.array([int(str(a["frame_id"]).rsplit(":", 1)[1]) for a in rows])
    edge = np.array([int(a["edge_label"]) for a in rows])  # type: ignore[call-overload]
    final = np.array([int(a["label"]) for a in rows])  # type: ignore[call-overload]
    conf = np.array([float(a["edge_confidence"]) for a in rows])  # type: ignore[arg-type]
    offloaded = np.array([a["source"] == "cloud" for a in rows])
    truth, cloud_ok = y[index], cloud[index] == y[index]
    edge_ok = edge == truth
    return CascadeFigures(
        frames=len(rows),
        edge_accuracy=float(edge_ok.mean()),
        cloud_accuracy=float(cloud_ok.mean()),
        offloaded=float(offloaded.mean()),
        cascade_accuracy=float((final == truth).mean()),
        offload_for_goal=offload_for_goal(conf, edge_ok, cloud_ok),
    )
