"""The fleet loop's pure parts: which devices a hard-example policy covers, the policy change,
and the cascade figures the retrain story and bench report."""

from __future__ import annotations

import numpy as np
import pytest

from controller.demo.retrain_shift import ShiftData, figures, night_camera, offload_for_goal
from controller.services.hard_example_policy import HardExamplePolicy, PolicyChange, retention_text


def test_a_policy_covers_only_its_devices_and_only_when_enabled() -> None:
    every = HardExamplePolicy("m", enabled=True)
    assert every.covers("a", {}) and not every.covers("ghost", None)  # unknown device: no
    assert not HardExamplePolicy("m").covers("a", {})  # the default is off
    by_id = HardExamplePolicy("m", enabled=True, device_ids=("a",))
    assert by_id.covers("a", {}) and not by_id.covers("b", {"site": "n"})
    either = HardExamplePolicy("m", enabled=True, device_ids=("a",), device_labels={"site": "n"})
    assert either.covers("b", {"site": "n", "x": "y"}) and not either.covers("c", {"site": "s"})
    changed = PolicyChange(enabled=True, retention_s=0).applied_to(by_id, now_ms=5)
    assert changed.device_ids == ("a",) and changed.retention_s == 0 and changed.created_ms == 5
    assert retention_text(0) == "no limit" and retention_text(7 * 86400) == "1w"
    assert retention_text(90 * 60) == "90m" and retention_text(7) == "7s"


def test_offload_for_goal_is_the_least_share_offloaded_least_confident_first() -> None:
    confidence = np.array([0.9, 0.2, 0.8, 0.3])
    edge_ok = np.array([True, False, True, False])
    cloud_ok = np.array([True, True, True, True])
    assert offload_for_goal(confidence, edge_ok, cloud_ok, goal=1.0) == 0.5
    assert offload_for_goal(confidence, edge_ok, cloud_ok, goal=0.75) == 0.25
    assert offload_for_goal(confidence, edge_ok, cloud_ok, goal=0.5) == 0.0
    assert offload_for_goal(confidence, edge_ok, np.zeros(4, bool) | [1, 0, 0, 0], 1.0) == 0.0
    never = offload_for_goal(confidence, np.zeros(4, bool), np.array([1, 1, 1, 0], bool), 1.01)
    assert never is None


def test_figures_from_the_agents_answers_and_the_shift_data() -> None:
    y = np.array([1, 2, 3])
    cloud = np.array([1, 2, 0])
    answers = [  # out of order, as agents write them
        {"frame_id": "s:2", "edge_label": 3, "label": 3, "edge_confidence": 0.9, "source": "edge"},
        {"frame_id": "s:0", "edge_label": 0, "label": 1, "edge_confidence": 0.1, "source": "cloud"},
        {"frame_id": "s:1", "edge_label": 2, "label": 2, "edge_confidence": 0.8, "source": "edge"},
    ]
    f = figures(answers, y, cloud)
    assert f.frames == 3 and f.edge_accuracy == pytest.approx(2 / 3)
    assert f.cloud_accuracy == pytest.approx(2 / 3) and f.cascade_accuracy == 1.0
    assert f.offloaded == pytest.approx(1 / 3) and f.offload_for_goal == 0.0
    data = ShiftData.digits(fleet_draws=2, held_draws=1)
    assert len(data.fleet_x) == 400 and len(data.held_x) == 100 and data.fleet_x.dtype == np.uint8
    frames = np.zeros((2, 8, 8), np.uint8)
    assert np.array_equal(night_camera(frames, 3), night_camera(frames, 3))  # seeded
    assert night_camera(frames, 3).mean() > 20  # the lifted floor
