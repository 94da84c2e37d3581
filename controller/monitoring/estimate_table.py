"""The build-time cloud table of the accuracy estimate (controller.monitoring.estimate):
per bin of edge confidence, on labelled frames, how often the edge and the cloud are right,
agree, and agree while both wrong; and the segment rates the estimate reads from it.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from edgefleet.histograms import CONFIDENCE_BOUNDS

INF = math.inf
CLOUD_TABLE_KEY = "cloud_by_confidence"  # where a variant's metrics keep its table
# A segment is "shifted" when its agreement is this far below the table's prediction (beyond
# two standard errors): test data differs from validation by a point or two on its own.
SHIFT_MARGIN = 0.02
SHIFT_SIGMAS = 2.0


def confidence_bin(confidence: float, ladder: Sequence[float] = CONFIDENCE_BOUNDS) -> float:
    """The histogram bucket (its upper bound; INF above the last) the agent counts it in."""
    i = bisect.bisect_left(ladder, confidence)
    return float(ladder[i]) if i < len(ladder) else INF


@dataclass(frozen=True)
class BinCounts:
    """Frames of one edge-confidence bin with a known true class."""

    n: int = 0
    edge_correct: int = 0
    cloud_correct: int = 0
    agree: int = 0
    agree_wrong: int = 0  # edge and cloud give the same wrong answer

    def plus(self, o: BinCounts) -> BinCounts:
        return BinCounts(*(a + b for a, b in zip(astuple(self), astuple(o), strict=True)))

    def rates(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """(mean, variance) of q, r, s (Jeffreys Beta posteriors), and cov(r, s) aside."""
        right, wrong = self.edge_correct, self.n - self.edge_correct
        agree_right = self.agree - self.agree_wrong
        cloud_right_edge_wrong = self.cloud_correct - agree_right
        return (
            _beta(agree_right, right),
            _beta(self.agree_wrong, wrong),
            _beta(cloud_right_edge_wrong, wrong),
        )


def astuple(c: BinCounts) -> tuple[int, ...]:
    return (c.n, c.edge_correct, c.cloud_correct, c.agree, c.agree_wrong)


def _beta(k: int, n: int) -> tuple[float, float]:
    a, b = k + 0.5, max(0, n - k) + 0.5
    mean = a / (a + b)
    return mean, mean * (1 - mean) / (a + b + 1)


@dataclass(frozen=True)
class CloudTable:
    """Build-time measurement: per bin of edge confidence (upper bound, INF for the top),
    the counts of :class:`BinCounts` on the validation set, for one edge variant and the
    cloud model configured for its edge model."""

    cloud_model: str
    bins: Mapping[float, BinCounts]

    def to_dict(self) -> dict[str, object]:
        return {
            "cloud_model": self.cloud_model,
            "bins": [
                {"upper": None if u == INF else u, **asdict(c)}
                for u, c in sorted(self.bins.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CloudTable:
        bins: dict[float, BinCounts] = {}
        for row in data.get("bins", []) or []:  # type: ignore[attr-defined]
            upper = INF if row.get("upper") is None else float(row["upper"])
            bins[upper] = BinCounts(
                **{k: int(row.get(k, 0)) for k in BinCounts.__dataclass_fields__}
            )
        return cls(str(data.get("cloud_model", "")), bins)

    def validation_mass(self) -> dict[float, int]:
        return {u: c.n for u, c in self.bins.items() if c.n}


def table_from_predictions(
    cloud_model: str,
    confidences: Iterable[float],
    edge_labels: Iterable[int],
    cloud_labels: Iterable[int],
    truth: Iterable[int],
) -> CloudTable:
    """The table of one edge variant on labelled frames (validation, or operator labels)."""
    bins: dict[float, BinCounts] = {}
    for conf, e, c, y in zip(confidences, edge_labels, cloud_labels, truth, strict=True):
        key = confidence_bin(float(conf))
        agree = e == c
        add = BinCounts(1, int(e == y), int(c == y), int(agree), int(agree and e != y))
        bins[key] = bins.get(key, BinCounts()).plus(add)
    return CloudTable(cloud_model, bins)


def split_by_confidence(
    mass: Mapping[float, float], hard: float
) -> tuple[dict[float, float], dict[float, float]]:
    """The lowest-confidence ``hard`` frames of a histogram, and the rest (bins split at the
    cut): the offload policy sends the least confident frames."""
    low: dict[float, float] = {}
    high: dict[float, float] = {}
    left = max(0.0, hard)
    for upper in sorted(mass):
        m = float(mass[upper])
        if m <= 0:
            continue
        take = min(m, left)
        left -= take
        if take > 0:
            low[upper] = take
        if m - take > 0:
            high[upper] = m - take
    return low, high


def _segment_rates(
    table: CloudTable, weights: Mapping[float, float]
) -> tuple[list[float], list[float], float]:
    """(q, r, s) of a segment, their variances and cov(r, s): the table's counts pooled over
    the segment's bins, each bin reweighted to the segment's mass in it (mass / validation
    frames), so that the rates are those of frames distributed like the window's."""
    sums = {"right": 0.0, "wrong": 0.0, "agree_right": 0.0, "agree_wrong": 0.0, "cloud_rw": 0.0}
    sq = {"right": 0.0, "wrong": 0.0}
    for upper, m in weights.items():
        c = table.bins.get(upper)
        if c is None or c.n <= 0 or m <= 0:
            continue  # no validation frame this confident: the other bins speak for it
        u = m / c.n
        right, wrong = c.edge_correct, c.n - c.edge_correct
        agree_right = c.agree - c.agree_wrong
        for key, x in (("right", right), ("wrong", wrong), ("agree_right", agree_right),
                       ("agree_wrong", c.agree_wrong),
                       ("cloud_rw", c.cloud_correct - agree_right)):  # fmt: skip
            sums[key] += u * x
        sq["right"] += u * u * right
        sq["wrong"] += u * u * wrong
    q, vq = _ratio(sums["agree_right"], sums["right"], sq["right"])
    r, vr = _ratio(sums["agree_wrong"], sums["wrong"], sq["wrong"])
    s, vs = _ratio(sums["cloud_rw"], sums["wrong"], sq["wrong"])
    n_eff = sums["wrong"] ** 2 / sq["wrong"] if sq["wrong"] > 0 else 0.0
    return [q, r, s], [vq, vr, vs], -r * s / (n_eff + 2)


def _shifted(
    table: CloudTable, weights: Mapping[float, float], g: float, var_g: float, pairs: int
) -> bool:
    """Whether a segment's agreement is below what the table predicts for its confidence mix
    (by SHIFT_MARGIN and SHIFT_SIGMAS standard errors): the edge is wrong more often than on
    validation at the same confidences, so how the cloud relates to its new mistakes is not
    known."""
    if pairs <= 0:
        return False
    agree = frames = sq = 0.0
    for upper, m in weights.items():
        c = table.bins.get(upper)
        if c is None or c.n <= 0 or m <= 0:
            continue
        u = m / c.n
        agree += u * c.agree
        frames += u * c.n
        sq += u * u * c.n
    if frames <= 0:
        return False
    expected = agree / frames
    var_expected = expected * (1 - expected) * sq / (frames * frames)
    return g < expected - SHIFT_MARGIN - SHIFT_SIGMAS * math.sqrt(var_g + var_expected)


def _flat_rates(table: CloudTable, weights: Mapping[float, float]) -> list[float]:
    """(q, r, s) averaged over the segment's bins by its mass alone (not by how many of a bin's
    frames the edge got wrong on validation): what they are if a shift fills every bin with
    wrong frames alike. The interval covers both this weighting and the pooled one."""
    total = sum(m for u, m in weights.items() if u in table.bins and table.bins[u].n > 0)
    out = [0.0, 0.0, 0.0]
    if total <= 0:
        return [1.0, 0.0, 0.5]
    for upper, m in weights.items():
        c = table.bins.get(upper)
        if c is None or c.n <= 0:
            continue
        for i, (mean, _var) in enumerate(c.rates()):
            out[i] += m / total * mean
    return out


def _ratio(x: float, y: float, y_sq: float) -> tuple[float, float]:
    """A weighted proportion x / y (y = sum of u * n, y_sq = sum of u^2 * n) and its variance
    at its effective sample size; no frames: uniform."""
    if y <= 0 or y_sq <= 0:
        return 0.5, 1.0 / 12.0
    n_eff = y * y / y_sq
    p = (x / y * n_eff + 0.5) / (n_eff + 1)  # Jeffreys-smoothed at the effective size
    return p, p * (1 - p) / (n_eff + 2)


def table_summary(table: CloudTable, hard_share: float = 0.2) -> dict[str, object]:
    """For `model variants`: the cloud's and the edge's accuracy on the ``hard_share`` least
    confident validation frames (what an offload budget of that share sends) and on the rest."""
    mass = {u: float(n) for u, n in table.validation_mass().items()}
    total = sum(mass.values())
    hard, rest = split_by_confidence(mass, hard_share * total)
    out: dict[str, object] = {"cloud_model": table.cloud_model, "frames": int(total)}
    for name, part in (("hard", hard), ("confident", rest)):
        n = sum(part.values())
        cloud = sum(m / table.bins[u].n * table.bins[u].cloud_correct for u, m in part.items())
        edge = sum(m / table.bins[u].n * table.bins[u].edge_correct for u, m in part.items())
        out[f"{name}_frames"] = round(n)
        out[f"cloud_accuracy_{name}"] = cloud / n if n else None
        out[f"edge_accuracy_{name}"] = edge / n if n else None
    return out
