"""Simulated windows of a device's telemetry, from the real fashion models' answers.

examples/fashion/outputs.npz holds both models' logits on validation, test and
test_corrupted (made by examples/fashion/make_outputs.py). A window resamples frames of a
stream, runs the cascade's decisions on them (the lowest-confidence share offloaded, a share
of those failing, a random audit of the confident rest) and sums what the agent would report:
the counters, the agreement pairs and the confidence histogram. The truth is the accuracy of
that window's final answers.

Streams:
- ``clean``: frames of test.npz (disjoint from the validation frames the table is built on).
- ``confident_wrong``: the shift the estimate is tested on: 30% of the frames come from the
  frames of test + test_corrupted that the edge model gets wrong with a calibrated confidence
  of at least 0.8 (a new kind of input it is confidently wrong on), the rest from test.npz.
- ``inverted``: test.npz's frames inverted (255 - x), the demo's drift: the edge is wrong on
  85% of them, often confidently, while the teacher stays 84% right (its mistakes are new ones,
  not the shared mistakes of validation data).
- ``corrupted``: frames of test_corrupted.npz (a camera in poor light: both models degrade,
  the cloud too, which the table cannot know; only labels catch that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.monitoring.estimate import (
    INF,
    CloudTable,
    LabelCounts,
    WindowCounts,
    table_from_predictions,
)
from edgefleet.histograms import CONFIDENCE_BOUNDS

OUTPUTS = Path(__file__).resolve().parent.parent / "examples" / "fashion" / "outputs.npz"
CONFIDENT = 0.8
SHIFT_SHARE = 0.3


@dataclass(frozen=True)
class Answers:
    confidence: np.ndarray  # the edge's calibrated max softmax
    edge: np.ndarray
    cloud: np.ndarray
    y: np.ndarray

    def take(self, idx: np.ndarray) -> Answers:
        return Answers(self.confidence[idx], self.edge[idx], self.cloud[idx], self.y[idx])

    @staticmethod
    def join(a: Answers, b: Answers) -> Answers:
        return Answers(
            *(np.concatenate(pair) for pair in zip(vars(a).values(), vars(b).values(), strict=True))
        )


def _softmax(logits: np.ndarray, t: float) -> np.ndarray:
    z = logits.astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Workload:
    validation: Answers
    test: Answers
    corrupted: Answers
    inverted: Answers
    temperature: float

    @classmethod
    def load(cls, path: Path = OUTPUTS) -> Workload:
        with np.load(path) as d:
            t = float(d["edge_temperature"])

            def answers(split: str) -> Answers:
                p = _softmax(d[f"{split}_edge"], t)
                return Answers(
                    p.max(1), p.argmax(1), d[f"{split}_cloud"].argmax(1), d[f"{split}_y"]
                )

            return cls(
                answers("validation"), answers("test"), answers("test_corrupted"),
                answers("test_inverted"), t,
            )  # fmt: skip

    def table(self) -> CloudTable:
        v = self.validation
        return table_from_predictions(
            "fashion-cloud:1",
            v.confidence.tolist(),
            v.edge.tolist(),
            v.cloud.tolist(),
            v.y.tolist(),
        )

    def confidently_wrong(self) -> Answers:
        both = Answers.join(self.test, self.corrupted)
        keep = (both.edge != both.y) & (both.confidence >= CONFIDENT)
        return both.take(np.flatnonzero(keep))

    def stream(self, kind: str, n: int, rng: np.random.Generator) -> Answers:
        if kind == "clean":
            return self.test.take(rng.integers(0, len(self.test.y), n))
        if kind == "inverted":
            return self.inverted.take(rng.integers(0, len(self.inverted.y), n))
        if kind == "corrupted":
            return self.corrupted.take(rng.integers(0, len(self.corrupted.y), n))
        if kind == "confident_wrong":
            wrong = self.confidently_wrong()
            k = rng.binomial(n, SHIFT_SHARE)
            a = wrong.take(rng.integers(0, len(wrong.y), k))
            b = self.test.take(rng.integers(0, len(self.test.y), n - k))
            return Answers.join(a, b)
        raise ValueError(kind)


@dataclass(frozen=True)
class Window:
    counts: WindowCounts
    truth: float  # accuracy of the final answers
    edge_only: float
    labels: LabelCounts | None


def simulate(
    frames: Answers,
    rng: np.random.Generator,
    offload_share: float = 0.2,
    failure_rate: float = 0.05,
    audit_fraction: float = 0.05,
    labels_per_window: int = 0,
) -> Window:
    """One window: the least confident ``offload_share`` offloaded (the budget policy's
    effect), ``failure_rate`` of them failing, ``audit_fraction`` of the rest audited;
    ``labels_per_window`` frames the operator labelled: half offloaded, half audited ones
    (``fleet frames`` lists both)."""
    n = len(frames.y)
    threshold = np.quantile(frames.confidence, offload_share)
    hard = frames.confidence < threshold
    failed = hard & (rng.random(n) < failure_rate)
    answered = hard & ~failed
    audited = ~hard & (rng.random(n) < audit_fraction)
    final = np.where(answered, frames.cloud, frames.edge)
    agree = frames.edge == frames.cloud
    ladder = np.array(CONFIDENCE_BOUNDS)
    buckets = np.bincount(np.searchsorted(ladder, frames.confidence, side="left"),
                          minlength=len(ladder) + 1)  # fmt: skip  # = the agent's bisect_left
    keys = [*CONFIDENCE_BOUNDS, INF]
    hist = {keys[i]: int(c) for i, c in enumerate(buckets) if c}
    counts = WindowCounts(
        frames=n,
        offloaded=int(hard.sum()),
        offload_failures=int(failed.sum()),
        offload_pairs=int(answered.sum()),
        offload_agreed=int((answered & agree).sum()),
        audit_pairs=int(audited.sum()),
        audit_agreed=int((audited & agree).sum()),
        confidence=hist,
    )
    labels = None
    if labels_per_window:
        k_hard = labels_per_window // 2
        k_audit = min(labels_per_window - k_hard, int(audited.sum()))
        hard_lab = frames.take(rng.choice(np.flatnonzero(answered), size=k_hard, replace=False))
        audit_lab = frames.take(rng.choice(np.flatnonzero(audited), size=k_audit, replace=False))
        labels = LabelCounts(
            hard=k_hard,
            hard_cloud_correct=int((hard_lab.cloud == hard_lab.y).sum()),
            audited=k_audit,
            audited_edge_correct=int((audit_lab.edge == audit_lab.y).sum()),
        )
    return Window(
        counts,
        float((final == frames.y).mean()),
        float((frames.edge == frames.y).mean()),
        labels,
    )
