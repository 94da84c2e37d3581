"""The pure accuracy estimate (controller.monitoring.estimate) on hand-made windows."""

from __future__ import annotations

import pytest

from controller.monitoring.estimate import (
    HEADLINE_CBPE,
    HEADLINE_PAIRS,
    INF,
    BinCounts,
    CloudTable,
    LabelCounts,
    WindowCounts,
    confidence_bin,
    estimate_accuracy,
    split_by_confidence,
    table_from_predictions,
)
from controller.monitoring.estimate_fleet import (
    audit_fraction_needed,
    combine,
    fleet_audit_fractions,
)

# validation: 100 frames at confidence 0.3 (edge right 50, cloud right 80), 900 above 0.95
# (edge right 880, cloud right 890)
TABLE = CloudTable(
    "cloud:1",
    {
        0.3: BinCounts(n=100, edge_correct=50, cloud_correct=80, agree=50, agree_wrong=5),
        INF: BinCounts(n=900, edge_correct=880, cloud_correct=890, agree=875, agree_wrong=5),
    },
)


def window(**over: object) -> WindowCounts:
    base = dict(
        frames=1000, offloaded=100, offload_failures=0, offload_pairs=100, offload_agreed=50,
        audit_pairs=200, audit_agreed=195, confidence={0.25: 0, 0.3: 100, 0.95: 0, INF: 900},
    )  # fmt: skip
    base.update(over)
    return WindowCounts(**base)  # type: ignore[arg-type]


def test_bins_match_the_agents_histogram() -> None:
    assert confidence_bin(0.3) == 0.3 and confidence_bin(0.31) == 0.35
    assert confidence_bin(0.96) == INF and confidence_bin(0.0) == 0.05
    t = table_from_predictions("c", [0.3, 0.99, 0.99], [1, 2, 3], [1, 2, 4], [1, 3, 4])
    assert t.bins[0.3] == BinCounts(1, 1, 1, 1, 0)
    assert t.bins[INF] == BinCounts(2, 0, 1, 1, 1)  # one shared mistake, one cloud right
    assert CloudTable.from_dict(t.to_dict()) == t


def test_split_takes_the_least_confident_first() -> None:
    low, high = split_by_confidence({0.3: 100, 0.5: 50, INF: 850}, 120)
    assert low == {0.3: 100, 0.5: 20} and high == {0.5: 30, INF: 850}


def test_cloud_errors_on_hard_frames_are_not_counted_as_right() -> None:
    e = estimate_accuracy(window(), TABLE)
    assert e.headline == HEADLINE_PAIRS and e.value is not None
    # truth at the table's rates: cloud right on 80% of the hard frames, edge ~97.8% on the rest
    expected = (100 * 0.8 + 900 * (880 / 900)) / 1000
    assert e.value == pytest.approx(expected, abs=0.01)
    assert e.low < expected < e.high and e.low >= 0.0 and e.high <= 1.0
    old = (100 + 900 * 195 / 200) / 1000  # cloud counted as right
    assert e.value < old - 0.01
    ev = e.evidence
    assert ev is not None and ev.audit_pairs == 200 and ev.offload_pairs == 100
    assert ev.frames_share["cloud_answered"] == pytest.approx(0.1)
    assert sum(ev.variance_share.values()) == pytest.approx(1.0)


def test_a_confidently_wrong_edge_is_caught_by_the_audit_and_missed_by_cbpe() -> None:
    # the same confidence histogram, but the audit finds the edge agreeing only 70% of the time
    e = estimate_accuracy(window(audit_agreed=140), TABLE)
    assert e.value is not None and e.cbpe_value is not None
    assert e.value < 0.8 and e.cbpe_value > 0.9  # CBPE reads the (unchanged) confidences
    assert e.cbpe_low > e.high  # the two disagree: the shift the audit sees


def test_no_pairs_falls_back_to_cbpe_and_no_frames_is_unknown() -> None:
    e = estimate_accuracy(window(audit_pairs=0, audit_agreed=0), TABLE)
    assert e.headline == HEADLINE_CBPE and "audit" in e.why and e.pairs_value is None
    assert e.value == e.cbpe_value
    unknown = estimate_accuracy(window(frames=0), TABLE)
    assert unknown.value is None and (unknown.low, unknown.high) == (0.0, 1.0)


def test_no_table_is_honestly_wide_and_failed_offloads_count_as_local() -> None:
    with_table = estimate_accuracy(window(), TABLE)
    without = estimate_accuracy(window(), None)
    assert without.value is not None and without.half_width > with_table.half_width
    failed = estimate_accuracy(
        window(offload_failures=100, offload_pairs=0, offload_agreed=0), TABLE
    )
    assert failed.value is not None and failed.evidence is not None
    assert failed.evidence.frames_share["failed_offload"] == pytest.approx(0.1)
    assert failed.value < with_table.value  # type: ignore[operator]  # edge 50% < cloud 80%


def test_labels_join_the_table_and_show_their_share() -> None:
    labels = LabelCounts(hard=40, hard_cloud_correct=20)  # cloud right 50%, not the table's 80%
    plain = estimate_accuracy(window(), TABLE)
    labelled = estimate_accuracy(window(), TABLE, labels)
    assert labelled.value is not None and plain.value is not None
    assert labelled.value < plain.value
    assert labelled.evidence is not None and labelled.evidence.labelled_pairs == 40
    assert labelled.evidence.variance_share["labels"] > 0


def test_audit_planning_and_combining() -> None:
    e = estimate_accuracy(window(audit_pairs=20, audit_agreed=19), TABLE)
    fraction, why = audit_fraction_needed(e, confident_frames_per_s=18.0, window_s=60.0)
    assert 0.02 <= fraction <= 1.0 / 18.0 and why
    fleet = fleet_audit_fractions({"a": (0.5, 10.0), "b": (0.5, 10.0)}, max_fleet_audits_per_s=5)
    assert fleet == {"a": 0.25, "b": 0.25}
    both = combine([(1000, e), (1000, estimate_accuracy(window(), TABLE))])
    assert both.value is not None and both.low <= both.value <= both.high
    assert both.pairs == e.pairs + 300
