"""The hard-example store on SQLite and PostgreSQL: opt-in per model and device, the cap and
the controller ceiling (oldest first), retention, and an index that survives a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.artifacts.local import LocalArtifactStore
from controller.services.hard_example_policy import PolicyChange, parse_retention
from controller.services.hard_examples import HardExamples
from controller.services.offload import LabelledPair
from controller.store.db import Database
from controller.store.models_models import ModelRow
from edgefleet.errors import InvalidInput, NotFound

DEVICES = {"cam-1": {"site": "north"}, "cam-2": {"site": "south"}, "cam-3": {"site": "north"}}


def _add_model(db: Database, name: str, role: str = "edge") -> None:
    with db.session() as s:
        s.add(
            ModelRow(
                name=name, version=1, role=role, cloud_for="digits" if role == "cloud" else "",
                source_sha256="0" * 64, source_size=1, input_name="input",
                input_shape=[1, 1, 32, 32], input_dtype="float32", layout="NCHW",
                output_name="logits", num_classes=10, preprocessing={}, labels=[],
                validation_sha256="0" * 64, created_ms=1,
            )
        )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(db: Database, tmp_path: Path, clock: Clock, ceiling: int = 0) -> HardExamples:
    store = HardExamples(
        db, LocalArtifactStore(tmp_path / "artifacts"), DEVICES.get, ceiling, clock=clock
    )
    store.start()
    return store


def _pair(device: str, model: str = "digits", i: int = 0, audit: bool = False) -> LabelledPair:
    return LabelledPair(
        device, model, f"{model}:1:fp32", f"f{i}", edge_label=1, edge_confidence=0.4,
        cloud_label=i % 10, cloud_confidence=0.95, cloud_model_id="c", audit=audit,
    )  # fmt: skip


def _frame(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8)


def _offer(store: HardExamples, device: str, n: int, model: str = "digits", start: int = 0) -> None:
    for i in range(start, start + n):
        store.offer(_pair(device, model, i), _frame(i))
    assert store.flush()


def test_frames_are_kept_only_for_an_enabled_policy_and_its_devices(
    db: Database, tmp_path: Path
) -> None:
    _add_model(db, "digits")
    _add_model(db, "other")
    clock = Clock()
    store = _store(db, tmp_path, clock)
    try:
        _offer(store, "cam-1", 3)  # no policy: nothing is kept
        assert store.counts("digits").frames == 0
        assert not store.policy("digits").enabled
        store.set_policy("digits", PolicyChange(enabled=True, device_labels={"site": "north"}))
        _offer(store, "cam-1", 3)
        _offer(store, "cam-2", 3)  # south: not covered
        _offer(store, "cam-3", 2)
        _offer(store, "stranger", 2)  # no such device
        _offer(store, "cam-1", 2, model="other")  # other model has no policy
        store.offer(_pair("cam-1", i=99, audit=True), _frame(99))  # audits are not kept
        store.offer(_pair("cam-1", i=98), np.zeros((2048, 2049), np.uint8))  # over 4 MiB
        assert store.flush()
        kept = store.frames("digits")
        assert sorted({f.device_id for f in kept}) == ["cam-1", "cam-3"] and len(kept) == 5
        assert store.counts("other").frames == 0
        assert store.counts("digits").dropped_busy == 1
        assert all(f.edge_confidence == pytest.approx(0.4) for f in kept)
        assert np.array_equal(store.read(kept[0]), _frame(0))
        assert kept[0].cloud_label == 0 and kept[0].cloud_confidence == pytest.approx(0.95)

        store.set_policy("digits", PolicyChange(device_ids=("cam-2",), device_labels={}))
        _offer(store, "cam-2", 1, start=10)
        _offer(store, "cam-1", 1, start=11)  # no longer covered
        assert [f.device_id for f in store.frames("digits")][-1] == "cam-2"
        assert store.counts("digits").frames == 6

        store.set_policy("digits", PolicyChange(enabled=False))
        _offer(store, "cam-2", 2, start=20)
        assert store.counts("digits").frames == 6  # disabled: nothing new
    finally:
        store.stop()


def test_cap_ceiling_retention_and_restart(db: Database, tmp_path: Path) -> None:
    _add_model(db, "digits")
    _add_model(db, "other")
    clock = Clock()
    store = _store(db, tmp_path, clock)
    try:
        store.set_policy("digits", PolicyChange(enabled=True, retention_s=3600))
        _offer(store, "cam-1", 4)
        one = store.frames("digits")[0].size_bytes
        store.set_policy("digits", PolicyChange(max_bytes=int(one * 5.5)))
        clock.now += 60
        _offer(store, "cam-1", 4, start=4)
        counts = store.counts("digits")
        assert counts.frames == 5 and counts.bytes <= one * 5.5 and counts.dropped_cap == 3
        assert store.frames("digits")[0].frame_id == "f3"  # the oldest went first
        since = store.frames("digits", since_ms=int(clock.now * 1000))
        assert {f.frame_id for f in since} == {"f4", "f5", "f6", "f7"}

        clock.now += 3600 - 30  # the first batch is now past the hour
        assert store.enforce() == 1
        assert store.counts("digits").dropped_retention == 1
    finally:
        store.stop()

    clock.now += 1
    restarted = _store(db, tmp_path, clock, ceiling=int(one * 6.5))
    try:
        assert restarted.policy("digits").retention_s == 3600
        assert restarted.counts("digits").frames == 4  # the index outlived the restart
        restarted.set_policy("other", PolicyChange(enabled=True))
        _offer(restarted, "cam-1", 4, model="other", start=30)
        together = restarted.counts("digits").frames + restarted.counts("other").frames
        assert together == 6  # the controller's ceiling drops the oldest of either model
        assert restarted.counts("digits").frames == 2
        frames = restarted.frames("digits")
        assert np.array_equal(restarted.read(frames[-1]), _frame(7))
        restarted.set_policy("digits", PolicyChange(purge=True))
        assert restarted.counts("digits").frames == 0
    finally:
        restarted.stop()


def test_bad_policies_are_refused_with_a_reason(db: Database, tmp_path: Path) -> None:
    _add_model(db, "digits")
    _add_model(db, "digits-cloud", role="cloud")
    store = _store(db, tmp_path, Clock())
    try:
        with pytest.raises(NotFound, match="no model 'nope'"):
            store.set_policy("nope", PolicyChange(enabled=True))
        with pytest.raises(NotFound):
            store.policy("nope")
        with pytest.raises(InvalidInput, match="cloud model"):
            store.set_policy("digits-cloud", PolicyChange(enabled=True))
        with pytest.raises(InvalidInput, match="size cap"):
            store.set_policy("digits", PolicyChange(max_bytes=0))
        with pytest.raises(InvalidInput, match="retention"):
            store.set_policy("digits", PolicyChange(retention_s=-5))
    finally:
        store.stop()
    assert parse_retention("7d") == 7 * 86400 and parse_retention("forever") == 0
    assert parse_retention("90m") == 5400
    for bad in ("soon", "7 days", "-1d", "0.0001s"):
        with pytest.raises(InvalidInput, match="retention"):
            parse_retention(bad)
