"""One latency measurement of a variant against the fp32 baseline, and its noise.

The variant and the baseline are timed interleaved, in several rounds; each round gives one
ratio (variant median / baseline median of that round). The median of the round ratios is the
point estimate. The noise is estimated robustly, in log space (ratios are multiplicative):
sigma = 1.0483 x the median of the pairwise differences between rounds (unbiased for normal
noise at any number of rounds, untroubled by one wild round), and the standard error of a
median of k rounds is 1.253 x sigma / sqrt(k). Stdlib only, so the CLI can read stored
measurements without the build's dependencies.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# A ratio needs two rounds before its spread says anything about the noise.
MIN_ROUNDS_FOR_INTERVAL = 2
# Intervals are the median +- this many standard errors (about 95% each). Two such intervals
# apart means a difference of more than 2.8 standard errors of the difference.
INTERVAL_Z = 2.0
_SIGMA_PER_PAIR_MEDIAN = 1.0483  # sigma / median |x_i - x_j| for normal x
_SE_OF_MEDIAN = 1.253  # standard error of a median / (sigma / sqrt(k)), normal noise


def sigma_from_pairs(pair_spreads: Iterable[float]) -> float | None:
    """Robust noise (log-ratio sigma) from pairwise round differences; None without any."""
    spreads = list(pair_spreads)
    if not spreads:
        return None
    return _SIGMA_PER_PAIR_MEDIAN * float(statistics.median(spreads))


def standard_error(sigma: float, rounds: int) -> float:
    """Of the median of ``rounds`` round ratios, in log space."""
    return _SE_OF_MEDIAN * sigma / math.sqrt(max(1, rounds))


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency at ``threads``; the baseline was timed in the same interleaved loop.

    ``median_ms`` .. ``baseline_p95_ms`` are over all timed runs; ``round_ratios`` holds one
    variant/baseline ratio per round (empty in reports made before rounds existed).
    """

    threads: int
    median_ms: float
    p95_ms: float
    baseline_median_ms: float
    baseline_p95_ms: float
    round_ratios: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        """Variant / fp32 baseline: the median of the round ratios (or of the medians)."""
        if self.round_ratios:
            return float(statistics.median(self.round_ratios))
        return self.median_ms / self.baseline_median_ms

    @property
    def has_interval(self) -> bool:
        return len(self.round_ratios) >= MIN_ROUNDS_FOR_INTERVAL

    def pair_spreads(self) -> list[float]:
        """|log r_i - log r_j| over every pair of rounds (for pooling the noise of a build)."""
        logs = [math.log(r) for r in self.round_ratios if r > 0]
        return [abs(a - b) for a, b in itertools.combinations(logs, 2)]

    @property
    def sigma(self) -> float | None:
        """This measurement's own noise per round (log ratio); None without two rounds."""
        return sigma_from_pairs(self.pair_spreads()) if self.has_interval else None

    @property
    def ratio_interval(self) -> tuple[float, float]:
        """The median ratio +- ``INTERVAL_Z`` standard errors of its own rounds; a single
        point when there is no spread to go by."""
        if self.sigma is None:
            return self.ratio, self.ratio
        half = INTERVAL_Z * standard_error(self.sigma, len(self.round_ratios))
        return self.ratio * math.exp(-half), self.ratio * math.exp(half)

    @property
    def interval_ms(self) -> tuple[float, float]:
        """The ratio interval in ms of this measurement's own baseline."""
        lo, hi = self.ratio_interval
        return lo * self.baseline_median_ms, hi * self.baseline_median_ms

    def to_dict(self) -> dict[str, Any]:
        """Stored fields plus derived ones (``ratio``, ``rounds``, ``ratio_lo``, ``ratio_hi``,
        ``interval_ms``) for readers that do not load the class."""
        lo, hi = self.ratio_interval
        return {
            "threads": self.threads,
            "median_ms": self.median_ms,
            "p95_ms": self.p95_ms,
            "baseline_median_ms": self.baseline_median_ms,
            "baseline_p95_ms": self.baseline_p95_ms,
            "round_ratios": list(self.round_ratios),
            "rounds": len(self.round_ratios),
            "ratio": self.ratio,
            "ratio_lo": lo if self.has_interval else None,
            "ratio_hi": hi if self.has_interval else None,
            "interval_ms": list(self.interval_ms) if self.has_interval else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Latency:
        """Inverse of ``to_dict``; derived keys are ignored, ``round_ratios`` may be absent."""
        return cls(
            threads=int(data["threads"]),
            median_ms=float(data["median_ms"]),
            p95_ms=float(data["p95_ms"]),
            baseline_median_ms=float(data["baseline_median_ms"]),
            baseline_p95_ms=float(data["baseline_p95_ms"]),
            round_ratios=tuple(float(r) for r in data.get("round_ratios") or ()),
        )
