"""Slot store: install into the spare slot, atomic activation, recovery after trouble."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import BinaryIO

import pytest

from agent.ota.errors import DiskFull, InstallFailed, SlotCorrupted
from agent.ota.local import make_target
from agent.ota.slots import MANIFEST_FILE, SlotStore


def stage_download(store: SlotStore, data: bytes) -> dict:
    target = make_target(data, version=len(data))
    target["variant_id"] = target["custom"]["variant_id"]
    with store.open_download(target["hashes"]["sha256"], 0) as fh:
        store.append(fh, data)
    return target


def install(store: SlotStore, data: bytes) -> str:
    target = stage_download(store, data)
    slot = store.install(target, "model.onnx", json.dumps(target["custom"]))
    return slot.name


def test_install_activate_commit_and_recover(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    assert store.recover().slot is None  # a fresh device has no model
    first = install(store, b"model-one")
    assert first == "A"
    store.activate(first)
    store.commit()
    second = install(store, b"model-two!")
    assert second == "B"
    assert store.state().active == "A"  # installing never touches the active slot
    store.activate(second)
    state = store.commit()
    assert (state.active, state.previous, state.probation) == ("B", "A", None)
    assert state.last_good == "demo:10:onnx-fp32"
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is not None and rec.slot.model_path.read_bytes() == b"model-two!"
    assert rec.events == ()
    variant = json.loads((rec.slot.path / "variant.json").read_text())
    assert variant["sha256"] == rec.slot.files["model.onnx"]


def test_crash_loop_in_probation_falls_back(tmp_path: Path) -> None:
    store = SlotStore(tmp_path, max_boot_attempts=2)
    store.activate(install(store, b"good"))
    store.commit()
    store.activate(install(store, b"crashy"))
    for attempt in (1, 2):  # two restarts are tolerated
        rec = SlotStore(tmp_path, max_boot_attempts=2).recover()
        assert rec.slot is not None and rec.slot.name == "B"
        assert rec.state.probation is not None and rec.state.probation.boot_attempts == attempt
    rec = SlotStore(tmp_path, max_boot_attempts=2).recover()
    assert rec.rolled_back and rec.slot is not None and rec.slot.name == "A"
    assert rec.slot.model_path.read_bytes() == b"good"
    assert "crashed 2 times in probation" in rec.events[0]
    assert rec.state.probation is None


def test_explicit_rollback_and_no_previous(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.activate(install(store, b"only"))
    with pytest.raises(SlotCorrupted, match="no previous slot"):
        store.rollback("bad metrics")
    store.activate(install(store, b"second"))
    state = store.rollback("bad metrics")
    assert state.active == "A" and "bad metrics" in state.last_event


def test_incomplete_install_is_wiped(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.activate(install(store, b"good"))
    store.commit()
    install(store, b"half-done")
    (store.slot_dir("B") / MANIFEST_FILE).unlink()  # crashed before the manifest landed
    (store.slot_dir("B") / "junk.tmp").write_bytes(b"x")
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is not None and rec.slot.name == "A"
    assert any("wiped incomplete install" in e for e in rec.events)
    assert list(store.slot_dir("B").iterdir()) == []


class FillsUp:
    """A writer that raises ENOSPC once ``budget`` bytes have been written."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, fh: BinaryIO, data: bytes) -> None:
        if len(data) > self.budget:
            fh.write(data[: self.budget])
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        fh.write(data)


@pytest.mark.parametrize("budget", [0, 5, 40, 200])
def test_disk_full_leaves_active_slot_intact(tmp_path: Path, budget: int) -> None:
    store = SlotStore(tmp_path)
    store.activate(install(store, b"good-model"))
    store.commit()
    before = store.state()
    target = stage_download(store, b"new-model-bytes")
    full = SlotStore(tmp_path, write=FillsUp(budget))
    with pytest.raises(DiskFull):
        full.install(target, "model.onnx", json.dumps(target["custom"]) * 20)
    assert full.state() == before
    assert list(store.slot_dir("B").iterdir()) == []  # spare slot wiped
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is not None and rec.slot.model_path.read_bytes() == b"good-model"


def test_disk_full_during_download_raises_disk_full(tmp_path: Path) -> None:
    store = SlotStore(tmp_path, write=FillsUp(3))
    with store.open_download("ab" * 32, 0) as fh, pytest.raises(DiskFull):
        store.append(fh, b"0123456789")


def test_corrupted_active_files_fall_back(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.activate(install(store, b"good"))
    store.commit()
    store.activate(install(store, b"newer"))
    store.commit()
    (store.slot_dir("B") / "model.onnx").write_bytes(b"bit rot")
    rec = SlotStore(tmp_path).recover()
    assert rec.rolled_back and rec.slot is not None and rec.slot.name == "A"
    assert any("slot B failed verification" in e for e in rec.events)
    # Both corrupt: nothing verifies, recovery says so instead of running garbage.
    (store.slot_dir("A") / "variant.json").write_text("{}")
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is None and any("no working slot" in e for e in rec.events)


def test_unreadable_state_file_rebuilt_from_slots(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.activate(install(store, b"good"))
    (tmp_path / "state.json").write_text("{not json")
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is not None and rec.slot.model_path.read_bytes() == b"good"
    assert any("unreadable" in e for e in rec.events)


def test_installed_but_never_activated_is_not_adopted(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    install(store, b"never smoke-tested")  # crashed right after the manifest landed
    rec = SlotStore(tmp_path).recover()
    assert rec.slot is None and rec.state.active is None


def test_rollback_refuses_a_previous_slot_whose_metadata_was_rewritten(tmp_path: Path) -> None:
    """Labels and temperature rewritten in variant.json, its manifest hash updated to match:
    the slot no longer equals the target it was verified against at install."""
    import hashlib

    store = SlotStore(tmp_path)
    store.activate(install(store, b"good"))
    store.commit()
    store.activate(install(store, b"newer"))
    slot_dir = store.slot_dir("A")
    meta = json.loads((slot_dir / "variant.json").read_text())
    meta["labels"], meta["temperature"] = ["renamed"], 0.001
    (slot_dir / "variant.json").write_text(json.dumps(meta))
    manifest = json.loads((slot_dir / MANIFEST_FILE).read_text())
    manifest["files"]["variant.json"] = hashlib.sha256(
        (slot_dir / "variant.json").read_bytes()
    ).hexdigest()
    (slot_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(SlotCorrupted, match=r"labels.*temperature"):
        store.rollback("probation failed")
    assert store.state().active == "B"


@pytest.mark.parametrize("name", ["manifest.json", "target.json", "variant.json", "x.tmp", ".."])
def test_install_refuses_a_model_file_name_of_its_own(tmp_path: Path, name: str) -> None:
    store = SlotStore(tmp_path)
    target = stage_download(store, b"model")
    with pytest.raises(InstallFailed):
        store.install(target, name, json.dumps(target["custom"]))
    assert not any(store.slot_dir("A").iterdir())
