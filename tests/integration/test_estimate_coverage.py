"""The accuracy estimate's interval holds: simulated windows of the real fashion cascade
(the edge student's and the EfficientNet teacher's own answers on test frames, resampled),
clean and under two shifts that make the edge confidently wrong: on frames whose mistakes the
teacher often shares, and on inverted frames it mostly gets right (tests/estimate_sim.py says
how they are made). The interval must contain the true accuracy of the window's final answers
in >= 95% of 200 seeded runs each; the old estimate (cloud answers counted as right) and
calibration-only CBPE are shown to miss the shift. The cached model outputs are checked
against the models first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controller.monitoring.estimate import CloudTable, estimate_accuracy
from controller.services.telemetry_math import Totals, cascade_accuracy
from tests.estimate_sim import OUTPUTS, Workload, simulate

RUNS = 200
FRAMES = 1200  # 60 s at 20 frames/s
FASHION = OUTPUTS.parent
pytestmark = pytest.mark.skipif(not OUTPUTS.is_file(), reason="examples/fashion/outputs.npz")


@pytest.fixture(scope="module")
def workload() -> Workload:
    return Workload.load()


def test_cached_outputs_are_the_models_answers() -> None:
    import onnxruntime as ort

    from edgefleet.frames import frame_tensor
    from edgefleet.modelmeta import Preprocessing

    with np.load(OUTPUTS) as cached:
        for model in ("edge", "cloud"):
            pre = json.loads((FASHION / f"{model}_preprocess.json").read_text())
            session = ort.InferenceSession(str(FASHION / f"{model}.onnx"),
                                           providers=["CPUExecutionProvider"])  # fmt: skip
            for split in ("validation", "test", "test_corrupted"):
                with np.load(FASHION / f"{split}.npz") as data:
                    x = data["x"][::250]  # 8 frames of each split
                batch = np.concatenate([frame_tensor(f, Preprocessing.from_dict(pre)) for f in x])
                out = session.run(None, {session.get_inputs()[0].name: batch})[0]
                np.testing.assert_allclose(out, cached[f"{split}_{model}"][::250], atol=1e-3)


def coverage(workload: Workload, table: CloudTable, kind: str) -> dict[str, float]:
    rng = np.random.default_rng(20261203)
    hits = {"ours": 0, "cbpe": 0, "old": 0}
    for _ in range(RUNS):
        window = simulate(workload.stream(kind, FRAMES, rng), rng, audit_fraction=0.1)
        e = estimate_accuracy(window.counts, table)
        c = window.counts
        old = cascade_accuracy(
            Totals(frames=c.frames, offloaded=c.offloaded, offload_failures=c.offload_failures,
                   offload_pairs=c.offload_pairs, offload_agreed=c.offload_agreed,
                   audit_pairs=c.audit_pairs, audit_agreed=c.audit_agreed)
        )  # fmt: skip
        hits["ours"] += e.pairs_low <= window.truth <= e.pairs_high
        hits["cbpe"] += e.cbpe_low <= window.truth <= e.cbpe_high
        hits["old"] += old.low <= window.truth <= old.high
    return {k: v / RUNS for k, v in hits.items()}


def test_interval_covers_the_truth_clean_and_when_the_edge_is_confidently_wrong(
    workload: Workload,
) -> None:
    table = workload.table()
    clean = coverage(workload, table, "clean")
    shifted = coverage(workload, table, "confident_wrong")
    inverted = coverage(workload, table, "inverted")  # new mistakes the cloud does not share
    assert clean["ours"] >= 0.95, clean
    assert shifted["ours"] >= 0.95, shifted
    assert inverted["ours"] >= 0.95 and inverted["cbpe"] < 0.05, inverted
    # the old estimate reads too high even on clean data; CBPE is blind to the shift
    assert clean["old"] < 0.5 and shifted["old"] < 0.05, (clean, shifted)
    assert shifted["cbpe"] < 0.05, shifted
