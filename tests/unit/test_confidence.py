from __future__ import annotations

import math

import numpy as np
import pytest

from agent.inference import (
    AuditSampler,
    BudgetPolicy,
    FixedThreshold,
    calibrated_probabilities,
    confidence_function,
    entropy_confidence,
    margin,
    max_softmax,
)


def test_temperature_softens_and_matches_softmax() -> None:
    logits = np.array([2.0, 1.0, 0.0])
    p1 = calibrated_probabilities(logits, 1.0)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(p1, expected)
    p2 = calibrated_probabilities(logits, 2.0)
    assert max_softmax(p2) < max_softmax(p1)
    # probability outputs are re-tempered through their logs
    np.testing.assert_allclose(calibrated_probabilities(p1, 2.0, outputs_are_logits=False), p2)
    with pytest.raises(ValueError):
        calibrated_probabilities(logits, 0.0)


def test_metrics_on_known_distributions() -> None:
    one_hot = np.array([0.0, 1.0, 0.0, 0.0])
    uniform = np.full(4, 0.25)
    mixed = np.array([0.5, 0.3, 0.2])
    assert max_softmax(mixed) == pytest.approx(0.5)
    assert margin(mixed) == pytest.approx(0.2)
    assert entropy_confidence(one_hot) == pytest.approx(1.0)
    assert entropy_confidence(uniform) == pytest.approx(0.0, abs=1e-9)
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert entropy_confidence(mixed) == pytest.approx(1 - h / math.log(3))
    assert confidence_function("margin") is margin
    with pytest.raises(ValueError):
        confidence_function("nope")


def test_fixed_threshold() -> None:
    policy = FixedThreshold(0.6)
    assert policy.should_offload(0.59) and not policy.should_offload(0.6)


@pytest.mark.parametrize("target", [0.05, 0.25, 0.5])
def test_budget_policy_converges_to_target_fraction(target: float) -> None:
    rng = np.random.default_rng(7)
    confidences = rng.beta(5, 1.5, size=4000)  # skewed toward confident, like a real model
    policy = BudgetPolicy(target_fraction=target, window=400)
    decisions = [policy.should_offload(float(c)) for c in confidences]
    realized = float(np.mean(decisions[1000:]))
    assert realized == pytest.approx(target, abs=0.02)
    # the threshold sits near the stream's target quantile
    assert policy.threshold == pytest.approx(float(np.quantile(confidences, target)), abs=0.05)


def test_budget_policy_tracks_a_drifting_stream() -> None:
    rng = np.random.default_rng(3)
    easy = rng.beta(8, 1, size=2000)
    hard = rng.beta(2, 2, size=2000)  # the scene gets harder: the threshold must follow
    policy = BudgetPolicy(target_fraction=0.2, window=300)
    decisions = [policy.should_offload(float(c)) for c in np.concatenate([easy, hard])]
    assert float(np.mean(decisions[2600:])) == pytest.approx(0.2, abs=0.03)


def test_budget_policy_frames_per_second_budget_uses_measured_rate() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01  # 100 frames/s
        return now[0]

    policy = BudgetPolicy(frames_per_s=10.0, clock=clock)
    rng = np.random.default_rng(0)
    decisions = [policy.should_offload(float(c)) for c in rng.uniform(size=3000)]
    assert policy.current_target() == pytest.approx(0.1, rel=0.01)
    assert float(np.mean(decisions[1000:])) == pytest.approx(0.1, abs=0.02)


def test_budget_policy_bytes_per_second_budget() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.02  # 50 frames/s
        return now[0]

    policy = BudgetPolicy(bytes_per_s=5000.0, clock=clock)
    policy.record_offload_bytes(1000)  # 5 frames/s of 1000 bytes -> 10% of 50 frames/s
    rng = np.random.default_rng(1)
    decisions = [policy.should_offload(float(c)) for c in rng.uniform(size=3000)]
    assert float(np.mean(decisions[1000:])) == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError):
        BudgetPolicy(target_fraction=0.1, frames_per_s=2.0)


def test_audit_sampler_is_seeded_and_near_its_fraction() -> None:
    a, b = AuditSampler(0.02, seed=5), AuditSampler(0.02, seed=5)
    draws = [a.should_audit() for _ in range(20000)]
    assert draws == [b.should_audit() for _ in range(20000)]
    assert float(np.mean(draws)) == pytest.approx(0.02, abs=0.005)
    assert not any(AuditSampler(0.0).should_audit() for _ in range(100))


def test_primed_budget_is_on_budget_from_the_first_frame() -> None:
    import numpy as np

    from edgefleet.confidence import confidence_quantiles

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(400, 10))
    prior = confidence_quantiles(logits, temperature=1.0)["max_softmax"]
    assert len(prior) == 21 and prior == sorted(prior)
    policy = BudgetPolicy(target_fraction=0.25)
    policy.prime(prior)
    stream = confidence_quantiles(rng.normal(0, 3, size=(400, 10)))  # same distribution
    first = [
        policy.should_offload(c)
        for c in np.linspace(stream["max_softmax"][0], stream["max_softmax"][-1], 40)
    ]
    # Without a prior the first 20 frames would use the 0.5 default; primed, about a quarter go.
    assert 0.1 <= sum(first) / len(first) <= 0.4
