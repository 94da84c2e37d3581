"""The agent's per-frame fast paths give exactly the answers of the general ones: the top
softmax (agent.inference.agent.top_softmax) and the bound batch-1 ONNX Runtime run
(agent.runtime.backends.BoundRun, used by LoadedModel.infer_frame)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.inference import Agent, FixedThreshold
from agent.inference.agent import top_softmax
from agent.runtime import ModelHolder, load_variant
from agent.runtime.errors import RuntimeFailure
from edgefleet.confidence import calibrated_probabilities
from tests.unit.test_runtime_models import SIDE, frames, random_weights, write_variant


def test_top_softmax_is_calibrated_probabilities_argmax_and_max_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for i in range(3000):
        out = (rng.normal(size=10) * rng.uniform(0.05, 40)).astype(np.float32)
        logits = i % 3 != 0
        if not logits:  # a model that answers probabilities
            e = np.exp(out - out.max())
            out = (e / e.sum()).astype(np.float32)
        temperature = float(rng.choice([1.0, 0.5, 1.7, 3.0]))
        p = calibrated_probabilities(out, temperature, logits)
        assert top_softmax(out, temperature, logits) == (int(np.argmax(p)), float(np.max(p)))


def test_the_bound_run_answers_as_the_general_run(tmp_path: Path) -> None:
    model = load_variant(write_variant(tmp_path / "v", random_weights(4)), threads=1)
    assert model.bound is not None
    batch = frames(50)
    fast = np.stack([model.infer_frame(f) for f in batch])
    general = np.stack([model.run(model.preprocessor(f))[0] for f in batch])
    assert np.array_equal(fast, general)
    # frames off the fast path (float, another size) take the general one
    other = np.random.default_rng(2).random((2 * SIDE, 2 * SIDE)).astype(np.float32)
    assert np.array_equal(model.infer_frame(other), model.run(model.preprocessor(other))[0])
    # answers are copies, not views of the bound buffer
    first = model.infer_frame(batch[0])
    model.infer_frame(batch[1])
    assert np.array_equal(first, general[0])


def test_concurrent_frames_get_their_own_answers(tmp_path: Path) -> None:
    """While one thread holds the bound buffers, the others take the general path."""
    model = load_variant(write_variant(tmp_path / "v", random_weights(5)), threads=1)
    batch = frames(64, seed=3)
    expected = [model.run(model.preprocessor(f))[0] for f in batch]
    wrong: list[int] = []

    def worker(offset: int) -> None:
        for k in range(200):
            i = (offset + k) % len(batch)
            if not np.array_equal(model.infer_frame(batch[i]), expected[i]):
                wrong.append(i)

    threads = [threading.Thread(target=worker, args=(n * 16,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert wrong == []


def test_a_non_finite_answer_is_still_a_runtime_failure(tmp_path: Path) -> None:
    weights, bias = random_weights(6)
    weights[:, 3] = np.inf  # +inf and -inf logits (frames have positive and negative pixels)
    model = load_variant(write_variant(tmp_path / "v", (weights, bias)), threads=1)
    agent = Agent(ModelHolder(model), FixedThreshold(0.0))
    try:
        with pytest.raises(RuntimeFailure, match="NaN or infinite"):
            agent.infer(frames(1)[0])
    finally:
        agent.close()
