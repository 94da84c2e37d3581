"""The desired-state message only names a signed target: what it may say, and what differs."""

from __future__ import annotations

import pytest

from agent.ota import machine as m
from agent.ota.desired import claimed_target, disagreements
from agent.ota.local import make_target
from edgefleet.errors import InvalidInput

SIGNED = {**make_target(b"model-bytes"), "custom": {**make_target(b"model-bytes")["custom"],
                                                    "profile": "p", "selected": True}}  # fmt: skip
TARGET = m.TargetInfo.from_dict(SIGNED)


def message(**change: object) -> dict[str, object]:
    return {
        "model": "demo", "version": 1, "variant_id": TARGET.variant_id,
        "target_path": TARGET.path, "sha256": TARGET.sha256, "length": TARGET.length,
        "rollout_id": "r1", "revision": 3,
        "target": {"path": TARGET.path, "length": TARGET.length,
                   "hashes": {"sha256": TARGET.sha256}},
        **change,
    }  # fmt: skip


def test_a_message_that_only_names_the_target_agrees() -> None:
    assert disagreements(message(), TARGET) == []
    claimed = claimed_target(message(target=None))  # top-level fields are enough
    assert claimed == {"path": TARGET.path, "length": TARGET.length,
                       "hashes": {"sha256": TARGET.sha256},
                       "custom": {"variant_id": TARGET.variant_id}}  # fmt: skip


def test_every_field_that_differs_from_the_signed_target_is_named() -> None:
    custom = {**make_target(b"model-bytes")["custom"], "labels": ["x"], "temperature": 0.001}
    target = {**message()["target"], "custom": custom}  # type: ignore[dict-item]
    assert disagreements(message(target=target), TARGET) == ["custom.labels", "custom.temperature"]
    assert disagreements(message(version=2, length=5), TARGET) == ["custom.version", "length"]
    assert disagreements(message(target={**target, "custom": "x"}), TARGET) == ["custom"]


def test_a_message_naming_no_target_is_refused() -> None:
    with pytest.raises(InvalidInput):
        claimed_target({"variant_id": "v", "target": {"path": 7}})
