"""The updater shell with real slots on disk and local fetchers: refusals keep the old model."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

from agent.ota import machine as m
from agent.ota.errors import SmokeTestFailed
from agent.ota.local import file_fetcher, hash_verifier, make_target
from agent.ota.slots import SlotStore
from agent.ota.updater import SmokeRun, Updater, UpdateStatus, make_smoke_test
from edgefleet.errors import VerificationError

CFG = m.UpdateConfig(max_retries=2, backoff_base=0.0, probation_seconds=0.0)


class Env:
    def __init__(self, root: Path) -> None:
        self.source = root / "source"
        self.store = SlotStore(root / "agent")
        self.reports: list[UpdateStatus] = []
        self.smoked: list[Path] = []

    def publish(self, data: bytes, version: int) -> dict[str, Any]:
        target = make_target(data, version=version)
        path = self.source / target["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return target

    def updater(self, **kw: Any) -> Updater:
        args: dict[str, Any] = {
            "fetch_chunks": file_fetcher(self.source, chunk_size=7),
            "verify": hash_verifier,
            "smoke_test": self.smoked.append,
            "report": self.reports.append,
            "config": CFG,
            "sleep": lambda s: None,
        }
        args.update(kw)
        return Updater(self.store, **args)

    def install_good(self) -> Updater:
        up = self.updater()
        assert up.apply(self.publish(b"version-one-model", 1)).phase == "probation"
        assert up.tick().phase == "committed"
        return up

    def active_bytes(self) -> bytes:
        rec = SlotStore(self.store.root).recover()
        assert rec.slot is not None
        return rec.slot.model_path.read_bytes()


def test_update_commits_and_reports_each_phase(tmp_path: Path) -> None:
    env = Env(tmp_path)
    up = env.install_good()
    phases = [r.phase for r in env.reports]
    assert phases == [
        "downloading",
        "verifying",
        "installing",
        "smoke_testing",
        "activating",
        "probation",
        "committed",
    ]
    assert env.smoked == [env.store.slot_dir("A")]
    assert up.state.current_variant == "demo:1:onnx-fp32"
    assert env.active_bytes() == b"version-one-model"
    assert list((env.store.root / "downloads").iterdir()) == []


def refuse(env: Env, desired: Any, **kw: Any) -> str:
    up = env.updater(**kw)
    state = up.apply(desired)
    assert state.phase in ("failed", "idle")
    assert env.reports[-1].phase == "failed"
    assert env.active_bytes() == b"version-one-model"
    assert env.store.state().active == "A"
    return env.reports[-1].reason


def test_tampered_bytes_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    target = env.publish(b"version-two-model", 2)
    (env.source / target["path"]).write_bytes(b"version-2wo-model")  # same length
    assert "sha256" in refuse(env, target)


def test_wrong_length_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    target = env.publish(b"version-two-model", 2)
    (env.source / target["path"]).write_bytes(b"version-two-model-and-more")
    assert "longer than the target" in refuse(env, target)


def test_truncated_download_retries_then_fails(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    target = env.publish(b"version-two-model", 2)
    (env.source / target["path"]).write_bytes(b"version")
    last_round = m.UpdateConfig(max_retries=2, backoff_base=0.0, retry_rounds=0)
    assert "truncated download: 7 of 17 bytes" in refuse(env, target, config=last_round)


def test_verifier_error_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()

    def bad_signature(info: Any, path: Path) -> None:
        raise VerificationError("targets role signature threshold not met")

    reason = refuse(env, env.publish(b"version-two-model", 2), verify=bad_signature)
    assert "signature threshold" in reason


def test_garbage_desired_state_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    assert "refused desired state" in refuse(env, {"length": "lots", "hashes": []})


def test_disk_full_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()

    def full(fh: BinaryIO, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    env.store = SlotStore(env.store.root, write=full)
    assert "disk full" in refuse(env, env.publish(b"version-two-model", 2))


def test_smoke_test_failure_keeps_old_model(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()

    def broken(variant_dir: Path) -> None:
        raise SmokeTestFailed("output has NaN")

    assert "NaN" in refuse(env, env.publish(b"version-two-model", 2), smoke_test=broken)


def test_flaky_fetch_resumes_from_offset(tmp_path: Path) -> None:
    env = Env(tmp_path)
    data = b"0123456789" * 5
    target = env.publish(data, 3)
    offsets: list[int] = []

    def flaky(t: m.TargetInfo, offset: int) -> Iterator[bytes]:
        offsets.append(offset)
        yield data[offset : offset + 12]
        if offset + 12 < len(data):
            raise ConnectionResetError("peer went away")

    up = env.updater(fetch_chunks=flaky)
    assert up.apply(target).phase == "probation"
    assert offsets == [0, 12, 24, 36, 48]
    assert up.tick().phase == "committed"
    assert env.active_bytes() == data


def test_restart_resumes_partial_download_and_probation(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    data = b"second-model-bytes"
    target = env.publish(data, 2)
    sha = target["hashes"]["sha256"]
    with env.store.open_download(sha, 0) as fh:
        fh.write(data[:10])  # a previous process got this far
    seen: list[int] = []
    fetch = file_fetcher(env.source, chunk_size=4)

    def recording(t: m.TargetInfo, offset: int) -> Iterator[bytes]:
        seen.append(offset)
        return fetch(t, offset)

    up = env.updater(fetch_chunks=recording)
    assert up.apply(target).phase == "probation" and seen == [10]
    # The process dies in probation; the next one continues it.
    rec = SlotStore(env.store.root).recover()
    assert rec.state.probation is not None and rec.slot is not None and rec.slot.name == "B"
    up2 = env.updater()
    assert up2.resume(rec).phase == "probation"
    assert up2.observe(m.ProbationMetrics(50, error_rate=0.0)).phase == "probation"
    assert up2.tick().phase == "committed"
    assert env.store.state().probation is None and env.store.state().last_good == "demo:2:onnx-fp32"


def test_probation_failure_rolls_back_slot(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.install_good()
    up = env.updater(config=m.UpdateConfig(probation_seconds=100.0))
    assert up.apply(env.publish(b"version-two-model", 2)).phase == "probation"
    assert env.store.state().active == "B"
    assert up.observe(m.ProbationMetrics(10, crashed=True)).phase == "rolled_back"
    assert env.store.state().active == "A"
    assert env.active_bytes() == b"version-one-model"
    assert env.reports[-1].phase == "rolled_back"


def test_make_smoke_test_checks_outputs(tmp_path: Path) -> None:
    def runner(outputs: list[Any], latencies: list[float]) -> Any:
        return make_smoke_test(
            lambda d: SmokeRun(outputs, latencies), output_shape=(1, -1), latency_budget_ms=10.0
        )

    runner([np.zeros((1, 3))], [1.0])(tmp_path)  # passes
    cases = [
        ([np.array([[np.nan, 1.0]])], [1.0], "NaN"),
        ([np.zeros((2, 3))], [1.0], "shape"),
        ([np.zeros((1, 3))] * 3, [1.0, 2.0, 50.0], "latency"),
        ([], [], "no outputs"),
        ([np.array([["a"]])], [1.0], "not numeric"),
    ]
    for outs, lats, why in cases:
        with pytest.raises(SmokeTestFailed, match=why):
            runner(outs, lats)(tmp_path)

    def explode(d: Path) -> SmokeRun:
        raise RuntimeError("invalid protobuf")

    with pytest.raises(SmokeTestFailed, match="invalid protobuf"):
        make_smoke_test(explode)(tmp_path)
