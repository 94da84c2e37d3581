"""The accuracy of a cascade's final answers over a window, with an interval that holds.

What the number estimates: the share of the frames a device (or cohort) answered in the
window whose final answer (the cloud's for a frame it answered, the edge model's for every
other frame) is the true class. Three kinds of frame, estimated separately and summed:

- cloud-answered (hard) frames: the cloud model's accuracy on them;
- confident frames answered locally: the edge model's accuracy on them;
- failed offloads (hard frames that kept the local answer): the edge's accuracy on hard frames.

Agreement between edge and cloud is what telemetry measures (offload pairs on hard frames,
a uniform audit sample of confident ones). Agreement is not accuracy: the cloud is wrong too,
most often on the frames the edge finds hard. A build-time table (:class:`CloudTable`: on the
validation set, per bin of edge confidence, how often edge and cloud are right, agree, and
agree while both wrong) turns agreement into accuracy under one stated assumption: *given
whether the edge is right or wrong on a frame of a confidence bin, the cloud behaves as on
validation data* (it agrees with a right edge with probability q, with a wrong edge with
probability r, is right while the edge is wrong with probability s). Then for a segment with
observed agreement g, the edge's accuracy is a = (g - r) / (q - r) and the cloud's is
a*q + (1 - a)*s. This holds when a shift changes how often the edge is wrong (the shift this
module is tested on: the stream fills with frames the edge is confidently wrong on), and it
does not when a shift changes the cloud's behaviour itself; operator labels
(:class:`LabelCounts`: offloaded and audited frames with their true class) are what catches
the second kind: the cloud's accuracy on hard frames and the edge's on confident ones read
from labels are combined with the table's (precision-weighted while they agree, the labels
alone when they do not, see :func:`combine_with_labels`).

The interval is a normal (delta-method) interval over every input: the two agreement rates
(binomial, Agresti-Coull variance), every table rate (Beta, from its finite counts, labels
included), clamped to [0, 1]. Next to it, CBPE (NannyML's confidence-based performance
estimation: the edge's expected accuracy is its mean calibrated confidence, read from the
telemetry's confidence histogram) is reported; it needs no pairs, and it breaks exactly when
the edge becomes confidently wrong. The headline is the agreement-based estimate whenever its
pairs exist, CBPE otherwise.

Pure: no I/O, no clock, no generated proto code.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from controller.monitoring.estimate_table import (
    CLOUD_TABLE_KEY,
    INF,
    BinCounts,
    CloudTable,
    _flat_rates,
    _segment_rates,
    _shifted,
    confidence_bin,
    split_by_confidence,
    table_from_predictions,
    table_summary,
)
from edgefleet.histograms import CONFIDENCE_BOUNDS

__all__ = [  # the estimate, and the table's names its callers use with it
    "CLOUD_TABLE_KEY", "HEADLINE_CBPE", "HEADLINE_PAIRS", "INF", "UNKNOWN", "Z95",
    "AccuracyEstimate", "BinCounts", "CloudTable", "Evidence", "LabelCounts", "WindowCounts",
    "combine_with_labels", "confidence_bin", "estimate_accuracy", "split_by_confidence",
    "table_from_predictions", "table_summary",
]  # fmt: skip

Z95 = 1.959963984540054
HEADLINE_PAIRS = "pairs"  # the agreement-based estimate
HEADLINE_CBPE = "cbpe"
MIN_RATE_GAP = 0.05  # q - r below this: agreement says little about accuracy; clamp the gap
_PARAMS = ("g_hard", "g_conf", "q_hard", "r_hard", "s_hard", "q_conf", "r_conf", "s_conf")


@dataclass(frozen=True)
class LabelCounts:
    """Operator-labelled frames of the current stream: hard (offloaded) frames and how many
    the cloud got right, audited (confident) frames and how many the edge got right."""

    hard: int = 0
    hard_cloud_correct: int = 0
    audited: int = 0
    audited_edge_correct: int = 0

    @property
    def total(self) -> int:
        return self.hard + self.audited


@dataclass(frozen=True)
class WindowCounts:
    """What telemetry says about a window (sums over its reports)."""

    frames: int
    offloaded: int  # hard frames, answered by the cloud or failed
    offload_failures: int  # hard frames that kept the local answer
    offload_pairs: int
    offload_agreed: int
    audit_pairs: int
    audit_agreed: int
    confidence: Mapping[float, int] = field(default_factory=dict)  # {upper bound: frames}


@dataclass(frozen=True)
class Evidence:
    """Each source: its count, the share of the frames it speaks for and the share of the
    interval's variance it carries."""

    audit_pairs: int
    offload_pairs: int
    labelled_pairs: int
    validation_frames: int
    frames_share: Mapping[str, float]  # cloud_answered / confident / failed_offload
    variance_share: Mapping[str, float]  # audit / offload / table / labels


@dataclass(frozen=True)
class AccuracyEstimate:
    """The headline estimate of the final answers' accuracy, its 95% interval, both methods."""

    value: float | None
    low: float
    high: float
    pairs: int  # offload + audit pairs (what the estimate stands on besides the table)
    headline: str = HEADLINE_PAIRS  # which method `value` is
    why: str = ""
    pairs_value: float | None = None
    pairs_low: float = 0.0
    pairs_high: float = 1.0
    cbpe_value: float | None = None
    cbpe_low: float = 0.0
    cbpe_high: float = 1.0
    evidence: Evidence | None = None
    audit_variance_weight: float = 0.0  # d(value)/d(audit agreement), for audit planning
    other_variance: float = 0.0  # the variance not from the audit pairs

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        return out


UNKNOWN = AccuracyEstimate(None, 0.0, 1.0, 0, HEADLINE_PAIRS, "no frames in the window")


def _edge_accuracy(g: float, q: float, r: float) -> float:
    """Unclamped (the gradient must not vanish at 0 or 1; the interval is clamped instead)."""
    return (g - r) / max(MIN_RATE_GAP, q - r)


def _binomial(k: int, n: int) -> tuple[float, float]:
    """Point estimate and Agresti-Coull variance of a proportion (n = 0: uniform)."""
    if n <= 0:
        return 0.5, 1.0 / 12.0
    p_tilde = (k + 2) / (n + 4)
    return k / n, p_tilde * (1 - p_tilde) / (n + 4)


def estimate_accuracy(
    w: WindowCounts, table: CloudTable | None, labels: LabelCounts | None = None
) -> AccuracyEstimate:
    """The window's accuracy estimate (see the module docstring for what it estimates)."""
    if w.frames <= 0:
        return UNKNOWN
    pairs = w.offload_pairs + w.audit_pairs
    n = float(w.frames)
    hard = min(w.offloaded, w.frames)
    failed = min(w.offload_failures, hard)
    cloud = hard - failed
    confident = w.frames - hard
    base = table or CloudTable("", {})
    full = base
    mass: dict[float, float] = {u: float(c) for u, c in w.confidence.items()}
    if (
        sum(mass.values()) > 0
    ):  # scale the histogram to the window's frame count (reports may lack it)
        scale = n / sum(mass.values())
        mass = {u: c * scale for u, c in mass.items()}
    else:
        ref = full.validation_mass()
        scale = n / sum(ref.values()) if ref else 0.0
        mass = {u: c * scale for u, c in ref.items()}
    hard_mass, conf_mass = split_by_confidence(mass, hard)
    (qh, rh, sh), var_h, cov_h = _segment_rates(full, hard_mass)
    (qc, rc, sc), var_c, cov_c = _segment_rates(full, conf_mass)
    if not full.bins:  # no table: agreement taken as correctness, disagreements unknown
        var_h = var_c = [0.0, 0.0, 0.25]
        qh, rh, sh, qc, rc, sc = 1.0, 0.0, 0.5, 1.0, 0.0, 0.5
        cov_h = cov_c = 0.0
    g_hard, vg_hard = _binomial(w.offload_agreed, w.offload_pairs)
    g_conf, vg_conf = _binomial(w.audit_agreed, w.audit_pairs)

    def cloud_hard(p: Sequence[float]) -> float:  # the cloud's accuracy on hard frames
        a_hard = _edge_accuracy(p[0], p[2], p[3])
        return a_hard * p[2] + (1 - a_hard) * p[4]

    def edge_confident(p: Sequence[float]) -> float:  # the edge's on confident frames
        return _edge_accuracy(p[1], p[5], p[6])

    def total(p: Sequence[float]) -> float:
        a_hard = _edge_accuracy(p[0], p[2], p[3])
        return (cloud * cloud_hard(p) + failed * a_hard + confident * edge_confident(p)) / n

    theta = [g_hard, g_conf, qh, rh, sh, qc, rc, sc]
    variances = [vg_hard, vg_conf, *var_h, *var_c]
    grad = _gradient(total, theta)
    parts = {name: grad[i] ** 2 * variances[i] for i, name in enumerate(_PARAMS)}
    parts["cov_rs"] = 2 * (grad[3] * grad[4] * cov_h + grad[6] * grad[7] * cov_c)
    variance = max(0.0, sum(parts.values()))
    needs_hard, needs_conf = hard > 0, confident > 0
    has_value = (w.offload_pairs > 0 or not needs_hard) and (w.audit_pairs > 0 or not needs_conf)
    moves = [
        (share, model, k_n, k_right)
        for share, model, k_n, k_right in (
            (cloud / n, cloud_hard, labels.hard, labels.hard_cloud_correct),
            (confident / n, edge_confident, labels.audited, labels.audited_edge_correct),
        )
        if k_n > 0 and share > 0
    ] if labels is not None else []  # fmt: skip

    def labelled(p: Sequence[float], var_p: float) -> tuple[float, float, float, float]:
        """total(p) and its variance with the labels' rates combined in; the labels' share
        of the variance and the table's share they took over."""
        value, var, label_var, moved = total(p), var_p, 0.0, 0.0
        for share, model, k_n, k_right in moves:
            m_value = model(p)
            m_var = sum(g * g * v for g, v in zip(_gradient(model, p), variances, strict=True))
            new, new_var, weight = combine_with_labels(m_value, m_var, k_right, k_n)
            value += share * (new - m_value)
            var += share * share * (new_var - m_var)
            label_var += share * share * new_var * weight
            moved += share * share * m_var * weight
        return value, max(0.0, var), label_var, moved

    raw, variance, label_var, moved = labelled(theta, variance)
    value = min(1.0, max(0.0, raw))
    half = Z95 * math.sqrt(variance)
    pairs_low, pairs_high = raw - half, raw + half
    shifted = _shifted(full, hard_mass, g_hard, vg_hard, w.offload_pairs) or _shifted(
        full, conf_mass, g_conf, vg_conf, w.audit_pairs
    )
    if shifted:
        # The edge is wrong more often than the table expects: its new mistakes may be spread
        # over the confidence bins unlike validation's (the flat weighting), or be new kinds
        # of mistake the cloud does not share (r = 0; the cloud as right where the edge is
        # wrong as where it is right, s = q, or right wherever the edge is wrong, s = 1: the
        # old estimate's reading). Each with its own delta-method width.
        for alternative in (
            [g_hard, g_conf, *_flat_rates(full, hard_mass), *_flat_rates(full, conf_mass)],
            [g_hard, g_conf, qh, 0.0, qh, qc, 0.0, qc],
            [g_hard, g_conf, qh, 0.0, 1.0, qc, 0.0, 1.0],  # ... and right wherever it is wrong
        ):
            grad_alt = _gradient(total, alternative)
            var_alt = sum(grad_alt[i] ** 2 * variances[i] for i in range(len(_PARAMS)))
            alt, var_alt, _, _ = labelled(alternative, var_alt)
            pairs_low = min(pairs_low, alt - Z95 * math.sqrt(var_alt))
            pairs_high = max(pairs_high, alt + Z95 * math.sqrt(var_alt))
    table_var = sum(parts[k] for k in _PARAMS[2:]) + parts["cov_rs"] - moved
    pairs_low, pairs_high = max(0.0, pairs_low), min(1.0, pairs_high)
    if shifted:  # no one reading of the table is more likely than another: the middle
        value = (pairs_low + pairs_high) / 2
    cbpe = _cbpe(hard_mass, conf_mass, cloud, failed, n, qh, rh, sh, full)
    shares = {
        "audit": parts["g_conf"],
        "offload": parts["g_hard"],
        "table": max(0.0, table_var),
        "labels": label_var,
    }
    share_total = sum(max(0.0, v) for v in shares.values()) or 1.0
    evidence = Evidence(
        audit_pairs=w.audit_pairs,
        offload_pairs=w.offload_pairs,
        labelled_pairs=labels.total if labels else 0,
        validation_frames=sum(c.n for c in base.bins.values()),
        frames_share={
            "cloud_answered": cloud / n,
            "confident": confident / n,
            "failed_offload": failed / n,
        },
        variance_share={k: max(0.0, v) / share_total for k, v in shares.items()},
    )
    common = dict(
        pairs=pairs,
        pairs_value=value if has_value else None,
        pairs_low=pairs_low,
        pairs_high=pairs_high,
        cbpe_value=cbpe[0],
        cbpe_low=cbpe[1],
        cbpe_high=cbpe[2],
        evidence=evidence,
        audit_variance_weight=grad[1],
        other_variance=max(0.0, variance - parts["g_conf"]),
    )
    if has_value:
        why = "edge-cloud agreement on the offload and audit pairs, corrected by the table"
        if shifted:
            why = (
                "the edge agrees with the cloud less than the table expects (a shift): the "
                "interval covers the cloud sharing its new mistakes as on validation data, and "
                "not sharing them; the value is its middle (labels narrow it)"
            )
        if not full.bins:
            why = (
                "no cloud table for this variant (built without a cloud model): agreement "
                "taken as correctness, the cloud's accuracy where the two disagree as unknown"
            )
        return AccuracyEstimate(value, pairs_low, pairs_high, headline=HEADLINE_PAIRS, why=why,
                                **common)  # type: ignore[arg-type]  # fmt: skip
    missing = "audit" if needs_conf and not w.audit_pairs else "offload"
    return AccuracyEstimate(cbpe[0], cbpe[1], cbpe[2], headline=HEADLINE_CBPE,
                            why=f"no {missing} pairs yet: calibrated confidence only (CBPE)",
                            **common)  # type: ignore[arg-type]  # fmt: skip


def _gradient(f: object, theta: Sequence[float], h: float = 1e-5) -> list[float]:
    fn = f  # a callable of the parameter vector
    out = []
    for i in range(len(theta)):
        up, down = list(theta), list(theta)
        up[i] += h
        down[i] -= h
        out.append((fn(up) - fn(down)) / (2 * h))  # type: ignore[operator]
    return out


def _midpoint(upper: float, ladder: Sequence[float] = CONFIDENCE_BOUNDS) -> tuple[float, float]:
    """The middle of a confidence bucket and its half width."""
    i = bisect.bisect_left(ladder, upper) if upper != INF else len(ladder)
    lower = float(ladder[i - 1]) if i > 0 else 0.0
    top = float(ladder[i]) if i < len(ladder) else 1.0
    return (lower + top) / 2, (top - lower) / 2


def _cbpe(
    hard_mass: Mapping[float, float],
    conf_mass: Mapping[float, float],
    cloud: int,
    failed: int,
    n: float,
    q: float,
    r: float,
    s: float,
    table: CloudTable,
) -> tuple[float | None, float, float]:
    """Calibration-only: the edge's frames at their mean calibrated confidence; the cloud's
    hard frames at the table's cloud accuracy for edge frames that confident."""
    if n <= 0:
        return None, 0.0, 1.0
    expected = var = bias = 0.0
    hard_total = sum(hard_mass.values()) or 1.0
    for upper, m in conf_mass.items():
        mid, half = _midpoint(upper)
        expected += m * mid
        var += m * mid * (1 - mid)
        bias += m * half
    for upper, m in hard_mass.items():
        mid, half = _midpoint(upper)
        share = failed / hard_total
        c_bin = mid * q + (1 - mid) * s if table.bins else 1.0
        expected += m * (share * mid + (1 - share) * c_bin)
        var += m * mid * (1 - mid)
        bias += m * share * half
    value = expected / n
    half = Z95 * math.sqrt(var) / n + bias / n
    return value, max(0.0, value - half), min(1.0, value + half)


def combine_with_labels(
    model: float, model_var: float, right: int, labelled: int
) -> tuple[float, float, float]:
    """A rate from the table's model combined with the same rate read from operator labels:
    precision-weighted while the two agree (within two standard errors), the labels alone
    when they do not (the table does not hold for the current frames). Returns the rate,
    its variance and the labels' weight."""
    lab, lab_var = _binomial(right, labelled)  # Agresti-Coull width: holds at a few dozen
    if abs(model - lab) > 2.0 * math.sqrt(model_var + lab_var):
        return lab, lab_var, 1.0
    if model_var <= 0:
        return model, 0.0, 0.0
    weight = model_var / (model_var + lab_var)
    # the combination's variance, plus the model's possible bias (its distance from the
    # labels, at the model's weight): labels the model disagrees with widen, not narrow
    bias = (1 - weight) * (model - lab)
    variance = model_var * lab_var / (model_var + lab_var) + bias * bias
    return weight * lab + (1 - weight) * model, variance, weight
