"""Calibrated confidence from a model's output, using the variant's softmax temperature.

Shared so that the build pipeline (which records how confident a variant usually is on
validation data) and the agent (which decides per frame what to offload) compute the same
numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

METRICS = ("max_softmax", "margin", "entropy")


def calibrated_probabilities(
    output: np.ndarray, temperature: float = 1.0, outputs_are_logits: bool = True
) -> np.ndarray:
    """softmax(logits / T). Probability outputs are re-tempered through their logs."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    x = np.asarray(output, dtype=np.float64).reshape(-1)
    if not outputs_are_logits:
        x = np.log(np.clip(x, 1e-12, None))
    x = x / temperature
    x = x - x.max()
    e = np.exp(x)
    return np.asarray(e / e.sum())


def max_softmax(probabilities: np.ndarray) -> float:
    return float(np.max(probabilities))


def margin(probabilities: np.ndarray) -> float:
    """Top-1 minus top-2 probability."""
    if probabilities.size < 2:
        return 1.0
    top2 = np.partition(probabilities, -2)[-2:]
    return float(top2[1] - top2[0])


def entropy_confidence(probabilities: np.ndarray) -> float:
    """1 - entropy / log(K): 1 for a one-hot answer, 0 for a uniform one."""
    k = probabilities.size
    if k < 2:
        return 1.0
    p = np.clip(probabilities, 1e-12, 1.0)
    entropy = float(-(p * np.log(p)).sum())
    return float(min(1.0, max(0.0, 1.0 - entropy / np.log(k))))


def confidence_function(metric: str) -> Callable[[np.ndarray], float]:
    functions: dict[str, Callable[[np.ndarray], float]] = {
        "max_softmax": max_softmax,
        "margin": margin,
        "entropy": entropy_confidence,
    }
    try:
        return functions[metric]
    except KeyError:
        raise ValueError(f"confidence metric must be one of {METRICS}, not {metric!r}") from None


QUANTILE_POINTS = 21  # 0%, 5%, ..., 100%


def confidence_quantiles(
    logits: np.ndarray, temperature: float = 1.0, outputs_are_logits: bool = True
) -> dict[str, list[float]]:
    """Quantiles of every confidence metric over a batch of outputs (e.g. validation data).

    Stored in a variant's metadata, they let an agent's offload budget start from the right
    threshold instead of learning it from its first frames.
    """
    levels = np.linspace(0.0, 1.0, QUANTILE_POINTS)
    rows = [calibrated_probabilities(row, temperature, outputs_are_logits) for row in logits]
    quantiles: dict[str, list[float]] = {}
    for metric in METRICS:
        measure = confidence_function(metric)
        values = np.array([measure(p) for p in rows])
        quantiles[metric] = [round(float(q), 6) for q in np.quantile(values, levels)]
    return quantiles


def validation_histograms(
    logits: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, ...],
    temperature: float = 1.0,
    outputs_are_logits: bool = True,
) -> dict[str, dict[str, list[float]]]:
    """Per metric: how many validation frames fall in each confidence bucket (``bounds``, a
    value equal to a bound counted below it) and how many of those the model got right.

    Stored with a variant, it is the baseline drift is measured against: the controller's PSI
    and expected agreement, and the agent's own shift check."""
    rows = [calibrated_probabilities(row, temperature, outputs_are_logits) for row in logits]
    right = np.asarray(logits).argmax(axis=1) == np.asarray(labels).reshape(-1)
    edges = np.asarray(bounds, dtype=np.float64)
    out: dict[str, dict[str, list[float]]] = {}
    for metric in METRICS:
        measure = confidence_function(metric)
        values = np.array([measure(p) for p in rows])
        index = np.searchsorted(edges, values, side="left")
        counts = np.bincount(index, minlength=len(bounds) + 1)
        correct = np.bincount(index, weights=right.astype(float), minlength=len(bounds) + 1)
        out[metric] = {
            "bounds": [float(b) for b in bounds],
            "counts": [int(c) for c in counts],
            "correct": [int(c) for c in correct],
        }
    return out
